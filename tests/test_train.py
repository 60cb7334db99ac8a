"""The training loop: optimisers, schedules, selection, early stopping, determinism and exact resumption."""

from __future__ import annotations

import json

import pytest
import torch

from taskspace.errors import ConfigError
from taskspace.optim import Adafactor, schedule_factor
from taskspace.tasks import Example
from taskspace.train import TrainConfig, TrainingError, batch_indices, choose_targets, train

EXAMPLES = [Example(f"x{i}", (f"y{i}",)) for i in range(10)]


class Quadratic(torch.nn.Module):
    """theta pulled towards per-example targets; a dropout keeps the global RNG in play (as in a backbone)."""

    def __init__(self):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(4))
        self.drop = torch.nn.Dropout(0.5)

    def loss(self, examples, targets):
        goal = torch.tensor([[float(t[1:]), 1.0, -1.0, 2.0] for t in targets])
        return ((self.drop(self.theta.expand_as(goal)) - goal) ** 2).mean()


def _run(tmp_path, steps, fail_at=None, **overrides):
    model = Quadratic()
    calls = {"n": 0}

    def loss_fn(examples, targets):
        calls["n"] += 1
        if fail_at is not None and calls["n"] == fail_at:
            raise KeyboardInterrupt("simulated interruption")
        return model.loss(examples, targets)

    scores = iter([0.0, 0.1, 0.5, 0.3, 0.4, 0.2, 0.6, 0.6])  # the first is the untrained state's (step 0)
    config = TrainConfig(**{"steps": steps, "batch_size": 3, "lr": 0.1, "eval_every": 2, "progress": False, **overrides})
    result = train(model, loss_fn, EXAMPLES, config, evaluate=lambda: next(scores), run_dir=tmp_path)
    return model, result


def test_a_checkpoint_is_not_resumed_on_other_training_examples(tmp_path):
    """A stage interrupted and run again after its data changed would mix two versions of it: refused."""
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, steps=10, fail_at=6)
    edited = [Example("x0", ("y9",)), *EXAMPLES[1:]]  # one label changed
    model = Quadratic()
    config = TrainConfig(steps=10, batch_size=3, lr=0.1, eval_every=2, progress=False)
    with pytest.raises(ConfigError, match="trained on other training examples"):
        train(model, model.loss, edited, config, evaluate=lambda: 0.0, run_dir=tmp_path)
    resumed = train(model, model.loss, EXAMPLES, config, evaluate=lambda: 0.0, run_dir=tmp_path)
    assert resumed.resumed_from == 4


def test_resumed_run_reproduces_the_uninterrupted_run(tmp_path):
    _, whole = _run(tmp_path / "a", steps=10)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", steps=10, fail_at=6)  # dies during step 6, after the step-4 checkpoint
    saved = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())
    assert saved["step"] == 4
    # The resumed run replays evaluations 3.. (its score iterator restarts, so feed it the remaining scores).
    model = Quadratic()
    scores = iter([0.3, 0.4, 0.2])
    config = TrainConfig(steps=10, batch_size=3, lr=0.1, eval_every=2, progress=False)
    resumed = train(model, model.loss, EXAMPLES, config, evaluate=lambda: next(scores), run_dir=tmp_path / "b")
    assert resumed.resumed_from == 4
    assert torch.equal(resumed.last_state["theta"], whole.last_state["theta"])
    assert resumed.best_step == whole.best_step == 4
    assert torch.equal(resumed.best_state["theta"], whole.best_state["theta"])
    assert [h.get("loss") for h in resumed.history] == [h.get("loss") for h in whole.history]


def test_the_untrained_state_takes_part_in_the_selection(tmp_path):
    """Step 0 is evaluated and wins when it scores strictly better than every trained state; on a tie the trained
    state wins (ties among trained states still go to the earlier one)."""
    config = TrainConfig(steps=6, batch_size=3, lr=0.1, eval_every=2, progress=False)
    model = Quadratic()
    initial = model.theta.detach().clone()
    scores = iter([0.6, 0.2, 0.5, 0.1])
    result = train(model, model.loss, EXAMPLES, config, evaluate=lambda: next(scores))
    assert result.best_step == 0 and result.best_score == 0.6
    assert torch.equal(result.best_state["theta"], initial)
    assert [h["step"] for h in result.history] == [0, 2, 4, 6]
    scores = iter([0.5, 0.2, 0.5, 0.5])
    result = train(Quadratic(), model.loss, EXAMPLES, config, evaluate=lambda: next(scores))
    assert result.best_step == 4
    # A known initial score is used instead of a step-0 evaluation.
    scores = iter([0.2, 0.3, 0.1])
    result = train(Quadratic(), model.loss, EXAMPLES, config, evaluate=lambda: next(scores), initial_score=0.25)
    assert result.best_step == 4 and result.history[0] == {"step": 0, "dev": 0.25}


def test_a_resumed_run_keeps_the_untrained_state_while_it_can_win(tmp_path):
    """Step 0 is best at the checkpoint and stays best after resuming: its state comes from the checkpoint."""
    config = TrainConfig(steps=6, batch_size=3, lr=0.1, eval_every=2, progress=False)

    def run(scores, fail_at=None):
        model = Quadratic()
        calls = {"n": 0}

        def loss_fn(examples, targets):
            calls["n"] += 1
            if fail_at is not None and calls["n"] == fail_at:
                raise KeyboardInterrupt
            return model.loss(examples, targets)

        return train(model, loss_fn, EXAMPLES, config, evaluate=lambda: next(scores), run_dir=tmp_path), model

    with pytest.raises(KeyboardInterrupt):
        run(iter([0.9, 0.1, 0.2]), fail_at=4)
    result, model = run(iter([0.2, 0.3]))
    assert result.resumed_from == 2 and result.best_step == 0 and result.best_score == 0.9
    assert torch.equal(result.best_state["theta"], torch.zeros(4))


def test_resume_refuses_changed_settings(tmp_path):
    _run(tmp_path, steps=4)
    with pytest.raises(ConfigError, match="different training settings"):
        _run(tmp_path, steps=4, lr=0.2)


def test_best_on_dev_and_early_stopping(tmp_path):
    _, result = _run(tmp_path, steps=20, patience=2)
    # Scores 0.1, 0.5, 0.3, 0.4: the best is the second evaluation (step 4); two worse ones stop the run.
    assert result.best_step == 4 and result.best_score == 0.5
    assert result.stopped_early and result.steps == 8
    assert [h["dev"] for h in result.history] == [0.0, 0.1, 0.5, 0.3, 0.4]  # step 0 first


def test_best_state_is_the_state_at_the_best_step(tmp_path):
    model = Quadratic()
    snapshots = []

    def evaluate():
        snapshots.append(model.theta.detach().clone())
        return [0.0, 0.2, 0.9, 0.1][len(snapshots) - 1]  # steps 0, 2, 4, 6

    config = TrainConfig(steps=6, batch_size=3, lr=0.1, eval_every=2, progress=False)
    result = train(model, model.loss, EXAMPLES, config, evaluate=evaluate)
    assert result.best_step == 4
    assert torch.equal(result.best_state["theta"], snapshots[2])
    assert not torch.equal(result.last_state["theta"], snapshots[2])


def test_nan_loss_is_reported_with_its_step():
    model = Quadratic()
    config = TrainConfig(steps=5, batch_size=2, lr=0.1, progress=False)
    with pytest.raises(TrainingError, match="step 1.*lower --lr"):
        train(model, lambda e, t: model.theta.sum() * float("nan"), EXAMPLES, config)


def test_data_order_is_seeded_and_covers_each_epoch():
    first_epoch = [i for step in range(4) for i in batch_indices(10, 3, seed=5, step=step)]
    assert sorted(first_epoch) == list(range(10))
    assert first_epoch == [i for step in range(4) for i in batch_indices(10, 3, seed=5, step=step)]
    assert first_epoch != [i for step in range(4) for i in batch_indices(10, 3, seed=6, step=step)]
    second_epoch = [i for step in range(4, 8) for i in batch_indices(10, 3, seed=5, step=step)]
    assert sorted(second_epoch) == list(range(10)) and second_epoch != first_epoch


def test_one_reference_is_sampled_per_example():
    e = Example("q", ("a", "b", "c"))
    picks = {choose_targets([e], seed=0, step=s)[0] for s in range(50)}
    assert picks == {"a", "b", "c"}
    assert choose_targets([e], 0, 7) == choose_targets([e], 0, 7)


def test_schedules():
    # Linear warm-up over 4 steps, then linear decay to 0 at step 10.
    assert [schedule_factor("linear", s, 10, 4) for s in (0, 3, 4, 7, 10)] == [0.25, 1.0, 1.0, 0.5, 0.0]
    assert [schedule_factor("constant", s, 10, 2) for s in (0, 1, 2, 9)] == [0.5, 1.0, 1.0, 1.0]
    assert schedule_factor("linear", 0, 10, 0) == 1.0
    with pytest.raises(ConfigError, match="--schedule"):
        schedule_factor("cosine", 0, 10, 0)


def test_learning_rates_follow_the_schedule():
    model = Quadratic()
    config = TrainConfig(steps=4, batch_size=2, lr=1.0, schedule="linear", warmup_steps=2, eval_every=1,
                         progress=False)
    result = train(model, model.loss, EXAMPLES, config)
    assert [h["lr"] for h in result.history] == [0.5, 1.0, 1.0, 0.5]


def test_adafactor_moves_a_zero_initialised_vector_and_minimises():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = Adafactor([p], lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        ((p - torch.tensor([1.0, -2.0, 0.5])) ** 2).sum().backward()
        opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([1.0, -2.0, 0.5]), atol=0.1, rtol=0)
    # The first step has RMS lr: the update is the clipped normalised gradient.
    q = torch.nn.Parameter(torch.zeros(4))
    opt = Adafactor([q], lr=0.01)
    q.grad = torch.tensor([1.0, -1.0, 2.0, -2.0])
    opt.step()
    torch.testing.assert_close(q.detach().abs(), torch.full((4,), 0.01))


def test_adafactor_factors_matrices():
    w = torch.nn.Parameter(torch.zeros(3, 5))
    opt = Adafactor([w], lr=0.05)
    target = torch.arange(15.0).view(3, 5) / 15
    for _ in range(300):
        opt.zero_grad()
        ((w - target) ** 2).sum().backward()
        opt.step()
    assert set(opt.state[w]) == {"step", "exp_avg_sq_row", "exp_avg_sq_col"}
    torch.testing.assert_close(w.detach(), target, atol=0.06, rtol=0)


@pytest.mark.parametrize(
    "field,value,flag",
    [("steps", 0, "--steps"), ("lr", 0.0, "--lr"), ("optimizer", "sgd", "--optimizer"),
     ("warmup_steps", 301, "--warmup-steps"), ("patience", 0, "--patience"), ("batch_size", 0, "--batch-size")],
)
def test_config_validation_names_the_option(field, value, flag):
    with pytest.raises(ConfigError, match=flag):
        TrainConfig(**{field: value}).validate()


class Linear(torch.nn.Module):
    """A loss without randomness whose gradient depends on which examples a batch holds."""

    def __init__(self):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(4))

    def loss(self, examples, targets):
        goal = torch.tensor([[float(t[1:]), 1.0, -1.0, 2.0] for t in targets])
        return ((self.theta - goal) ** 2 * torch.arange(1.0, 5.0)).sum(-1).mean() + self.theta.square().sum()


@pytest.mark.parametrize("micro", [1, 2, 4])
def test_micro_batches_compute_the_same_steps(micro):
    """Gradient accumulation: each step's batch in micro-batches (the last one smaller), one backward pass each,
    gives the steps of one pass over the whole batch; a run differing only in it resumes the other's checkpoint."""
    states = []
    for size in (None, micro):
        model = Linear()
        config = TrainConfig(steps=6, batch_size=5, lr=0.1, progress=False, micro_batch_size=size)
        train(model, model.loss, EXAMPLES, config)
        states.append(model.theta.detach().clone())
    assert torch.allclose(states[0], states[1], atol=1e-6)
    assert config.identity() == TrainConfig(steps=6, batch_size=5, lr=0.1).identity()


def test_a_summed_loss_is_split_exactly_by_its_share():
    """A loss that sums over the batch (IPT's code) divides by micro_batch_share() and so keeps its steps."""
    from taskspace.train import micro_batch_share

    assert micro_batch_share() == 1.0
    states = []
    for size in (None, 2):
        model = Linear()

        def summed(examples, targets, model=model):
            return model.loss(examples, targets) * len(examples) / micro_batch_share()

        train(model, summed, EXAMPLES, TrainConfig(steps=4, batch_size=5, lr=0.01, progress=False,
                                                  micro_batch_size=size))
        states.append(model.theta.detach().clone())
    assert torch.allclose(states[0], states[1], atol=1e-6)


def test_checkpoints_carry_the_cuda_generators(tmp_path, monkeypatch):
    """Where CUDA is present, every device's generator state is saved with the checkpoint and restored on resume."""
    saved = [torch.tensor([1, 2, 3], dtype=torch.uint8), torch.tensor([4, 5], dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.append(states))
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, steps=6, fail_at=4)  # dies in step 4, after the step-2 checkpoint
    model = Quadratic()
    scores = iter([0.5, 0.3])
    train(model, model.loss, EXAMPLES, TrainConfig(steps=6, batch_size=3, lr=0.1, eval_every=2, progress=False),
          evaluate=lambda: next(scores), run_dir=tmp_path)
    assert len(restored) == 1 and [s.tolist() for s in restored[0]] == [[1, 2, 3], [4, 5]]


def test_float16_weights_are_refused_for_training():
    backbone = torch.nn.Linear(2, 2).half()
    backbone.dtype = torch.float16
    model = Linear()
    with pytest.raises(ConfigError, match="dtype=float16: .*loss scaling"):
        train(model, model.loss, EXAMPLES, TrainConfig(steps=1, progress=False), backbone=backbone)


def test_train_many_equals_each_job_trained_alone(tmp_path):
    """Three trainables in one pass (one joint backward per step) end exactly where each ends trained alone:
    their own data orders, optimisers, schedules, selections, checkpoints, and early stopping (the second job
    stops after two evaluations without progress and leaves the pass; the others go on)."""
    from taskspace.train import TrainJob, train_many

    def scores(values):
        it = iter(values)
        return lambda: next(it)

    dev = [[0.0, 0.2, 0.1, 0.3, 0.3, 0.2], [0.0, 0.5, 0.4, 0.4, 0.9, 0.9], [0.1, 0.1, 0.2, 0.2, 0.2, 0.2]]
    configs = [TrainConfig(steps=10, batch_size=3, lr=0.1, eval_every=2, progress=False, seed=s,
                           patience=2 if s == 1 else None, schedule="linear" if s else "constant") for s in range(3)]
    alone = []
    for k, config in enumerate(configs):
        model = Linear()
        alone.append(train(model, model.loss, EXAMPLES, config, evaluate=scores(dev[k]), run_dir=tmp_path / f"a{k}"))
    models = [Linear() for _ in configs]
    jobs = [TrainJob(m, EXAMPLES, c, evaluate=scores(dev[k]), run_dir=tmp_path / f"b{k}")
            for k, (m, c) in enumerate(zip(models, configs))]
    seen = []

    def joint_loss(items):
        seen.append([k for k, _, _ in items])
        return [models[k].loss(batch, targets) for k, batch, targets in items]

    together = train_many(jobs, joint_loss)
    for a, b in zip(alone, together):
        assert (a.best_step, a.steps, a.stopped_early) == (b.best_step, b.steps, b.stopped_early)
        assert torch.equal(a.best_state["theta"], b.best_state["theta"])
        assert torch.equal(a.last_state["theta"], b.last_state["theta"])
        def clockless(history):
            return [{k: v for k, v in r.items() if k != "seconds"} for r in history]

        assert clockless(a.history) == clockless(b.history)
    assert together[1].stopped_early and together[1].steps == 6
    assert seen[0] == [0, 1, 2] and seen[-1] == [0, 2] and len(seen) == 10
    with pytest.raises(ConfigError, match="micro-batch-size"):
        train_many([TrainJob(Linear(), EXAMPLES, TrainConfig(micro_batch_size=1, progress=False))], joint_loss)
