"""Subspaces on a small real bank: the 260K-parameter Llama, three shared tasks, four methods, a few steps."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from taskspace.analysis import gain_kept, relative_table
from taskspace.analysis.reports import reconstruction_table, transfer_tables
from taskspace.backbones import load_backbone
from taskspace.deltas import METHODS as REGISTRY
from taskspace.errors import ConfigError, DataError, IncompatibleError
from taskspace.projections import build_projection
from taskspace.store import read_tensors
from taskspace.subspace import (Bank, BankSpec, FastfoodConfig, FitData, MSFConfig, RandomAEConfig, SharedConfig,
                                Subspace, SubspaceTuneConfig, UnifiedConfig, build_bank, build_finder, fit_subspace,
                                load_z, mixing_weights, subspace_tune, transfer)
from taskspace.subspace.finders import AutoEncoder
from taskspace.subspace.reconstruction import reconstruction_scores
from taskspace.train import TrainConfig
from tiny import tiny_backbone

TASKS = ["glue-sst2", "superglue-copa", "ag_news"]
METHODS = {"prompt": {"n_tokens": 4}, "lora": {"r": 2}, "adapter": {"r": 2}, "prefix": {"n_tokens": 4, "hidden": 8}}


def quick(steps=4, **kw):
    return TrainConfig(steps=steps, eval_every=2, progress=False, **kw)


def fit_bank(finder, config, bank, tasks, folder):
    """Fit ``finder`` to ``bank``'s solutions of ``tasks`` (its training state in ``folder``) and save it there."""
    return fit_subspace(finder, bank, tasks, config=config, out=folder)


@pytest.fixture(scope="module")
def llama(shared_dir):
    # the plain template, as this module's fits were sized under (a model without a chat template now defaults to
    # the boundary)
    return load_backbone(f"{shared_dir}/models/stories260K", template="plain")


@pytest.fixture(scope="module")
def bank(llama, data_dir, tmp_path_factory):
    # prompt tuning at its former default rate: the module's fits are sized to solutions that moved that far
    spec = BankSpec(tasks=TASKS, methods=METHODS, data_dir=str(data_dir), train=quick(), max_test_examples=8,
                    lr={"prompt": 0.03})
    return build_bank(tmp_path_factory.mktemp("bank"), spec, llama)


@pytest.mark.slow  # the module's bank: every method trained on two tasks
def test_bank_entries_and_their_common_anchor(bank):
    thetas, init = bank.stacked(TASKS, "lora")
    assert thetas.shape == (3, bank.method("lora").size)
    # The anchor is the method's initialisation from the bank's seed, computed here independently.
    torch.testing.assert_close(init, bank.method("lora").init(torch.Generator().manual_seed(bank.spec.seeds[0])), rtol=0, atol=0)
    entries = bank.entries(TASKS, "lora")
    assert all(torch.equal(e.theta_init, init) for e in entries)  # the same initialisation seed for every task
    assert not torch.equal(thetas[0], thetas[1])  # and different solutions
    assert all(not torch.equal(e.theta, init) for e in entries)  # each one trained away from the anchor
    for e in entries:
        assert 0 <= e.scores["test"] <= 1
        torch.testing.assert_close(e.delta, e.theta - init)


@pytest.mark.slow  # the module's bank: every method trained on two tasks
def test_bank_records_the_learning_rate_each_method_used(bank, data_dir):
    """bank.json holds every method's learning rate (given or default), never an unused placeholder."""
    record = json.loads((bank.root / "bank.json").read_text())["spec"]
    assert record["train"]["lr"] is None  # not used: no placeholder number
    assert record["lr"] == {**{m: REGISTRY[m].default_lr for m in METHODS}, "prompt": 0.03}  # the fixture gives one
    assert BankSpec(tasks=TASKS, methods={"lora": {}}, data_dir=str(data_dir), lr={"lora": 0.5}).lr == {"lora": 0.5}
    with pytest.raises(ConfigError, match="--lr prompt=.*not among the bank's methods"):
        BankSpec(tasks=TASKS, methods={"lora": {}}, data_dir=str(data_dir), lr={"prompt": 0.5})


@pytest.mark.slow  # the module's bank: every method trained on two tasks
def test_rebuilding_a_bank_verifies_instead_of_retraining(bank, llama, data_dir):
    mtimes = {p: p.stat().st_mtime_ns for p in bank.root.rglob("theta.safetensors")}
    again = build_bank(bank.root, bank.spec, llama)
    assert {p: p.stat().st_mtime_ns for p in again.root.rglob("theta.safetensors")} == mtimes
    other = BankSpec(tasks=TASKS, methods={"lora": {"r": 3}}, data_dir=str(data_dir), train=quick())
    with pytest.raises(ConfigError, match="another bank"):
        build_bank(bank.root, other, llama)


@pytest.mark.slow  # the module's bank: every method trained on two tasks
def test_missing_or_corrupt_entries_are_errors_never_stand_ins(bank, tmp_path):
    copy = tmp_path / "bank"
    shutil.copytree(bank.root, copy)
    entry = copy / "ag_news" / "prompt" / "s0"
    (entry / "scores.json").unlink()
    with pytest.raises(DataError, match=r"\(ag_news, prompt, seed 0\) is missing or unfinished"):
        Bank(copy, bank.backbone).entry("ag_news", "prompt")
    sst2 = copy / "glue-sst2" / "prompt" / "s0" / "theta.safetensors"
    sst2.write_bytes(sst2.read_bytes()[:100])
    with pytest.raises(DataError, match="not a readable safetensors file"):
        Bank(copy, bank.backbone).entry("glue-sst2", "prompt")
    with pytest.raises(ConfigError, match="no entry"):
        bank.entry("trec", "prompt")


@pytest.mark.slow  # the module's bank: every method trained on two tasks
def test_a_bank_refuses_another_backbone(bank, shared_dir):
    with pytest.raises(ConfigError, match="tuned on backbone"):
        Bank(bank.root, tiny_backbone("gpt2", str(shared_dir)))


@pytest.mark.slow  # the module's bank: every method trained on two tasks
def test_msf_reconstruction_falls(bank, tmp_path):
    thetas, _ = bank.stacked(TASKS[:2], "prompt")
    # lm_loss="mean": the unsmoothed mean token loss, against which alpha = 200 makes the fit mostly reconstruction.
    config = MSFConfig(method="prompt", d=3, hidden=16, alpha=200.0, lm_loss="mean", train=quick(steps=30, lr=1e-2))
    ae = AutoEncoder(*_fresh_autoencoder(thetas.shape[1], config))
    before = (ae(thetas) - thetas).square().mean()
    space = fit_bank("ipt", config, bank, TASKS[:2], tmp_path / "ipt")
    ms = space["prompt"]
    with torch.no_grad():
        after = (ms.up(ms.down(thetas)) - thetas).square().mean()
    assert after < 0.5 * before, (float(before), float(after))
    assert space.info["tasks"] == TASKS[:2]
    table = reconstruction_table("prompt", space.recipe, space.d, TASKS[:2],
                                 *reconstruction_scores(space, bank, TASKS[:2], "prompt"))
    assert table.rows[-1][0] == "average" and table.rows[0][0] == "glue-sst2"


def _fresh_autoencoder(D, config):
    from taskspace.projections import IPTDecoder, IPTEncoder

    return IPTEncoder(D, config.d, seed=config.seed), IPTDecoder(config.d, D, config.hidden, seed=config.seed + 1)


@pytest.mark.slow  # the module's bank: every method trained on two tasks
def test_ist_trains_only_d_numbers(bank, data_dir, tmp_path):
    space = fit_bank("ipt", MSFConfig(d=5, hidden=16, train=quick()), bank, TASKS[:2], tmp_path / "ipt")
    decoder_before = {k: v.clone() for k, v in space["prompt"].up.state_dict().items()}
    run = tmp_path / "ist"
    config = SubspaceTuneConfig(task="superglue-copa", method="prompt", data_dir=str(data_dir),
                                train=quick(steps=6, lr=0.1), max_test_examples=8, eval_batch_size=1)
    projections = []
    hook = space["prompt"].up.register_forward_hook(lambda *_: projections.append(1))
    scores = subspace_tune(space, tmp_path / "ipt", config, run)
    hook.remove()
    # One projection per step and one per evaluation (the zero-shot one, 3 on dev during training, the final one
    # whose theta scores dev and test and is saved), however many batches an evaluation has (one example each).
    assert len(projections) == 6 + 1 + 3 + 1, len(projections)
    z, saved = load_z(run)
    assert z.shape == (5,) and saved["d"] == 5
    trainable = read_tensors(run / "trainable.safetensors")
    assert list(trainable) == ["z"] and trainable["z"].shape == (5,)  # nothing else was trained
    assert not (run / "checkpoint").exists()  # a finished run keeps no resume state
    assert all(torch.equal(decoder_before[k], v) for k, v in space["prompt"].up.state_dict().items())
    assert not torch.equal(z, torch.randn(5, generator=torch.Generator().manual_seed(0)) * 0.02)  # z moved
    # The decoded theta was saved like any delta and reproduces the scores.
    theta = space.theta("prompt", z)
    from taskspace.store import load_delta

    saved_theta, _, _ = load_delta(run / "theta", space["prompt"].method)
    torch.testing.assert_close(saved_theta, theta)
    assert 0 <= scores["test"] <= 1


def test_mixing_weights_follow_the_paper():
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([mixing_weights(3, g) for _ in range(4000)])
    assert torch.allclose(draws.sum(1), torch.ones(4000)) and bool((draws >= 0).all())
    # alpha ~ U(0, 1) (mean 1/2), beta ~ U(0, 1 - alpha) (mean 1/4), the rest 1/4.
    torch.testing.assert_close(draws.mean(0), torch.tensor([0.5, 0.25, 0.25]), atol=0.02, rtol=0)


@pytest.mark.slow  # the module's bank: every method trained on two tasks
def test_unified_subspace_transfer_and_round_trip(bank, llama, data_dir, tmp_path, monkeypatch):
    import taskspace.subspace.finders.unified as unified

    draws = []
    monkeypatch.setattr(unified, "mixing_weights", lambda m, g=None: draws.append(m) or mixing_weights(m, g))
    folder = tmp_path / "udt"
    space = fit_bank("unified", UnifiedConfig(methods=("adapter", "prefix", "lora"), d=4, train=quick()), bank,
                     TASKS[:2], folder)
    # Deterministic validation: mixing weights are drawn for the 4 training steps only, never at validation.
    assert draws == [3] * 4
    assert set(space.methods) == {"adapter", "prefix", "lora"}
    for name, ms in space.methods.items():
        assert ms.up.d_in == 4 and ms.up.d_out == bank.method(name).size
        assert torch.equal(ms.anchor, bank.stacked(TASKS[:2], name)[1])
    # Validation ran before training and at both evaluations (steps 0, 2 and 4).
    log = [json.loads(line) for line in (folder / "fit" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 2, 4] and all("dev" in r for r in log)

    # Round trip: the reloaded subspace decodes identically.
    loaded = Subspace.load(folder, llama)
    z = torch.randn(4)
    for name in space.methods:
        torch.testing.assert_close(loaded.theta(name, z), space.theta(name, z))

    # Subspace optimisation with LoRA, then transfer: decode its z through adapter and prefix.
    run = tmp_path / "st"
    subspace_tune(loaded, folder, SubspaceTuneConfig(task="ag_news", method="lora", data_dir=str(data_dir),
                                                     train=quick(), max_test_examples=8), run)
    out = transfer(loaded, folder, run, selection="source")
    assert set(out) == {"adapter", "prefix", "lora"}
    z, _ = load_z(run)
    from taskspace.tasks import load_task
    from taskspace.evaluation import capped_test_split, evaluate

    task = load_task("ag_news", str(data_dir))
    manual = evaluate(llama, capped_test_split(task, 8, 0), task.metric, method=loaded["adapter"].method,
                      theta=loaded["adapter"].anchor + loaded["adapter"].up(z))[0]
    assert out["adapter"]["test"] == manual
    scores = json.loads((run / "scores.json").read_text())
    assert out["lora"]["test"] == scores["test"]  # the source's own decoding is the tuned result
    # The paper's selection: for each target, the evaluated step whose transferred z is best on dev.
    from taskspace.runs import trajectory

    paper = transfer(loaded, folder, run)
    states = trajectory(run)
    assert sorted(states) == [0, 2, 4]  # every evaluation's z
    for target in ("adapter", "prefix"):
        devs = {step: evaluate(llama, task.dev, task.metric, method=loaded[target].method,
                               theta=loaded[target].theta(state["z"]))[0] for step, state in states.items()}
        best = max(devs.values())
        assert paper[target]["dev"] == best and paper[target]["step"] == min(s for s in devs if devs[s] == best)
    assert paper["lora"]["test"] == scores["test"]  # the source keeps its own best step
    tables = transfer_tables({"ag_news": {"lora": out}}, bank)
    assert tables[0].header == ["source \\ target", "adapter", "lora", "prefix"]


@pytest.mark.slow  # the module's bank: every method trained on two tasks
def test_subspace_refuses_other_backbones_and_layouts(bank, shared_dir, tmp_path):
    folder = tmp_path / "udt"
    space = fit_bank("unified", UnifiedConfig(methods=("adapter", "lora"), d=3, train=quick(steps=2)), bank,
                     TASKS[:2], folder)
    with pytest.raises(IncompatibleError, match="fitted on backbone"):
        Subspace.load(folder, tiny_backbone("gpt2", str(shared_dir)))
    meta = json.loads((folder / "subspace.json").read_text())
    meta["methods"]["lora"]["options"]["r"] = 3
    (folder / "subspace.json").write_text(json.dumps(meta))
    with pytest.raises(IncompatibleError, match="lora .* size"):
        Subspace.load(folder, space.backbone)


def test_random_baselines(llama, data_dir, tmp_path):
    data = FitData(llama, [], method_options={"prompt": {"n_tokens": 4}})
    a = build_finder("random-ae", RandomAEConfig(method="prompt", d=6, hidden=16, seed=1)).fit(data)
    b = build_finder("random-ae", RandomAEConfig(method="prompt", d=6, hidden=16, seed=1)).fit(data)
    z = torch.randn(6)
    torch.testing.assert_close(a.theta("prompt", z), b.theta("prompt", z))
    assert not any(p.requires_grad for p in a["prompt"].up.parameters())

    ff = build_finder("fastfood", FastfoodConfig(d=20, seed=3)).fit(FitData(llama, []))
    assert ff["finetune"].method.size == llama.num_parameters()
    ff.save(tmp_path / "ff")
    reloaded = Subspace.load(tmp_path / "ff", llama)
    z = torch.randn(20)
    torch.testing.assert_close(reloaded.theta("finetune", z), ff.theta("finetune", z))
    scores = subspace_tune(reloaded, tmp_path / "ff", SubspaceTuneConfig(
        task="glue-sst2", method="finetune", data_dir=str(data_dir), z_init="zeros",
        train=quick(steps=2, lr=1.0), max_test_examples=8), tmp_path / "ff-run")
    assert scores["zero_shot"]["init"] == scores["zero_shot"]["frozen"]  # z = 0 is the pre-trained model


def test_shared_variant_with_fine_tuning_through_fastfood(llama, data_dir, tmp_path):
    config = SharedConfig(methods=("lora", "finetune"), d=6, train=quick(steps=2, lr=0.05))
    data = FitData(llama, ["glue-sst2"], data_dir=str(data_dir), method_options={"lora": {"r": 2}})
    space = build_finder("shared", config).fit(data, work_dir=tmp_path / "shared")
    space.save(tmp_path / "shared")
    up = space["finetune"].up
    assert [n for n, _ in up.named_parameters()] and all("G" in n for n, _ in up.named_parameters())
    reloaded = Subspace.load(tmp_path / "shared", llama)
    for (name, p), (_, q) in zip(up.named_parameters(), reloaded["finetune"].up.named_parameters()):
        torch.testing.assert_close(p, q)
    fresh = build_projection(up.config())  # the same seeded draws, untrained: G has moved in training
    assert any(not torch.equal(p, q) for (_, p), (_, q) in zip(up.named_parameters(), fresh.named_parameters()))
    assert space.task_vectors.shape == (1, 6)
    torch.testing.assert_close(reloaded.task_vectors, space.task_vectors)


def test_relative_table_by_hand():
    table = relative_table("t", ["a", "b", "c"], [0.5, 0.3, 0.2], [0.5, 0.6, 0.0])
    # a: 100 %, b: 50 %, c: no positive reference (left out); average of ratios 75 %.
    assert [r[3] for r in table.rows] == [100.0, 50.0, None, 75.0]
    assert "1 task(s)" in table.notes
    assert table.csv().splitlines()[0] == "task,subspace %,original %,relative %"


def test_gain_kept_by_hand():
    frozen = {"a": 0.50, "b": 0.40, "c": 0.60, "d": 0.30}
    reference = {"a": 0.70, "b": 0.42, "c": 0.80, "d": 0.50}   # b gains only 2 points: left out at margin 0.05
    scores = {"a": 0.60, "b": 0.90, "c": 0.55, "d": None}      # d has no score: left out
    tasks, share, gain = gain_kept(scores, reference, frozen, margin=0.05)
    assert tasks == ["a", "c"]
    # a keeps 0.10 / 0.20 = 50 %; c loses 0.05 of a 0.20 gain = -25 %; mean 12.5 %; the references gain 20 points.
    assert share == pytest.approx(0.125) and gain == pytest.approx(0.20)
    assert gain_kept(scores, reference, frozen, margin=0.5) == ([], None, None)


@pytest.mark.slow  # the module's bank: every method trained on two tasks
def test_ipt_with_adapters(bank, tmp_path):
    """IPT (Adapter): the same pipeline with the adapter bank; the decoder outputs adapter thetas, and MSF learns
    to reconstruct the adapter solutions (an untrained auto-encoder would not)."""
    thetas, _ = bank.stacked(TASKS[:2], "adapter")
    config = MSFConfig(method="adapter", d=3, hidden=8, lm_loss="mean", train=quick(steps=30, lr=1e-2))
    before = (AutoEncoder(*_fresh_autoencoder(thetas.shape[1], config))(thetas) - thetas).square().mean()
    space = fit_bank("ipt", config, bank, TASKS[:2], tmp_path / "ipt-a")
    ms = space["adapter"]
    assert ms.up.d_out == bank.method("adapter").size
    with torch.no_grad():
        theta = space.theta("adapter", torch.zeros(3))
        after = (ms.up(ms.down(thetas)) - thetas).square().mean()
    assert theta.shape == (bank.method("adapter").size,)
    # Deterministic (seeded): the untrained auto-encoder reconstructs exactly as badly as `before`.
    assert after < 0.9 * before, (float(before), float(after))


@pytest.mark.slow  # the module's bank: every method trained on two tasks
def test_prompt_tuning_initialised_from_an_ist_solution(bank, llama, data_dir, tmp_path):
    from taskspace.store import load_delta
    from taskspace.tuning import TuneConfig, tune

    space = fit_bank("ipt", MSFConfig(d=3, hidden=8, train=quick(steps=2)), bank, TASKS[:2], tmp_path / "ipt")
    ist = tmp_path / "ist"
    ist_scores = subspace_tune(space, tmp_path / "ipt", SubspaceTuneConfig(
        task="superglue-copa", method="prompt", data_dir=str(data_dir), train=quick(), max_test_examples=8), ist)
    config = TuneConfig(task="superglue-copa", method="prompt", data_dir=str(data_dir), method_options=METHODS["prompt"],
                        backbone=llama.name, train=quick(), max_test_examples=8, init_from=str(ist / "theta"))
    result = tune(config, tmp_path / "pt", backbone=llama)
    # The run starts exactly at the IST solution: its zero-shot "initial theta" scores are the IST scores.
    assert result.scores["zero_shot"]["init"] == {"dev": ist_scores["dev"], "test": ist_scores["test"]}
    _, init, _ = load_delta(tmp_path / "pt" / "theta", space["prompt"].method)
    torch.testing.assert_close(init, load_delta(ist / "theta", space["prompt"].method)[0])


@pytest.mark.slow  # the module's bank: every method trained on two tasks
def test_udt_micro_batches_share_their_steps_mixing_weights(bank, tmp_path, monkeypatch):
    """A UDT fit with each step's batch in micro-batches draws one set of mixing weights per step, as without
    them, and so fits the same subspace (up to float rounding)."""
    import taskspace.subspace.finders.unified as unified

    draws = []
    monkeypatch.setattr(unified, "mixing_weights", lambda m, g=None: draws.append(m) or mixing_weights(m, g))
    spaces = []
    for micro in (None, 1):
        config = UnifiedConfig(methods=("adapter", "lora"), d=4, train=quick(micro_batch_size=micro))
        spaces.append(fit_bank("unified", config, bank, TASKS[:2], tmp_path / f"udt-{micro}"))
        assert len(draws) == 4  # one per step
        draws.clear()
    for name in ("adapter", "lora"):
        one, parts = spaces[0][name].up.state_dict(), spaces[1][name].up.state_dict()
        for key in one:
            torch.testing.assert_close(parts[key], one[key], rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # the module's bank: every method trained on two tasks
def test_udt_up_projections_start_at_zero_on_request(bank, tmp_path):
    """``up_init="zeros"``: every decoded solution starts at its method's anchor, so one AdamW step of rate lr moves
    an up-projection weight by at most lr; nn.Linear's uniform start is far from that; ``normal`` (with
    ``down_init="normal"``) draws both projections from N(0, 0.02), as the authors' code does."""
    lr = 1e-4
    for init in ("zeros", "uniform", "normal"):
        config = UnifiedConfig(methods=("adapter", "lora"), d=4, up_init=init,
                               down_init="normal" if init == "normal" else "uniform",
                               train=quick(steps=1, optimizer="adamw", lr=lr, schedule="constant"))
        space = fit_bank("unified", config, bank, TASKS[:2], tmp_path / init)
        largest = max(float(p.abs().max()) for ms in space.methods.values() for p in ms.up.parameters())
        if init == "zeros":
            assert 0 < largest <= 1.01 * lr
        elif init == "uniform":
            assert largest > 0.1  # U(-1/2, 1/2) for d = 4
        else:
            for ms in space.methods.values():  # one step moves a weight by about lr: the start's spread stays
                assert all(0.015 < float(w.std()) < 0.025 for w in (ms.up.layers[0].weight, ms.down.layers[0].weight))
    assert json.loads((tmp_path / "zeros" / "subspace.json").read_text())["info"]["config"]["up_init"] == "zeros"


def test_udt_distance_terms_by_hand():
    """The paper's term (squared, from the mixture) and the authors' code's (torch.dist, from the own vector)."""
    from taskspace.subspace.finders.unified import distance_term

    delta = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    mixture = torch.tensor([[4.0, 5.0], [0.0, 2.0]])  # squared distances 25 and 4
    own = torch.tensor([[1.0, 4.0], [3.0, 4.0]])      # distances 3 and 5
    assert float(distance_term("paper", mixture, own, delta)) == pytest.approx((25 + 4) / 2)
    assert float(distance_term("code", mixture, own, delta)) == pytest.approx((3 + 5) / 2)
    for row in range(2):
        assert float(torch.dist(own[row], delta[row])) == pytest.approx([3, 5][row])


def test_msf_task_loss_forms(llama, data_dir):
    """lm_loss="code" is IPT's original task loss: label-smoothed (0.1) and summed over the batch's tokens."""
    from taskspace.deltas import build_method
    from taskspace.subspace import MultiTask, mixed_loss

    tasks = MultiTask.load(TASKS[:2], str(data_dir))
    examples = [tasks.tasks[TASKS[0]].train[0], tasks.tasks[TASKS[1]].train[0], tasks.tasks[TASKS[0]].train[1]]
    targets = [e.references[0] for e in examples]
    index = tasks.index(examples)
    for name in ("lora", "finetune"):  # per-example theta, and one model copy per task
        method = build_method(name, llama, METHODS.get(name, {}))
        thetas = torch.stack([method.init(torch.Generator().manual_seed(s)) for s in (1, 2)])
        if name == "finetune":
            thetas = thetas + 0.01 * torch.randn(thetas.shape, generator=torch.Generator().manual_seed(3))
        theta_of = lambda rows: thetas[index[rows]]  # noqa: E731
        by_hand = torch.tensor(0.0)
        for e, t, i in zip(examples, targets, index.tolist()):
            with method.bind(thetas[i]), torch.no_grad():
                batch = llama.collate([e], [t])
                per_token_sum = llama.loss(batch, label_smoothing=0.1, reduction="sum")
                mean = llama.loss(batch, label_smoothing=0.1)
                tokens = int((batch["labels"] != -100).sum())
            torch.testing.assert_close(per_token_sum, mean * tokens)  # a sum over the answer's tokens
            by_hand = by_hand + per_token_sum.sum()
        with torch.no_grad():
            code = mixed_loss(llama, method, examples, targets, index, theta_of, label_smoothing=0.1, tokens="sum")
            plain = mixed_loss(llama, method, examples, targets, index, theta_of)
        torch.testing.assert_close(code, by_hand)
        assert float(code) > 2 * float(plain)  # summed over tokens and examples, not averaged


@pytest.mark.slow  # the module's bank: every method trained on two tasks
def test_a_bank_refuses_entries_scored_another_way(bank, shared_dir):
    """bank.json records how its entries are scored (decode protocol, lengths): resuming the bank with another
    --decode is refused, not mixed in; a bank written before those settings were recorded still resumes."""
    from taskspace.backbones import load_backbone

    other = load_backbone(f"{shared_dir}/models/stories260K", template="plain",
                          decode="generate" if bank.backbone.decode == "rank" else "rank")
    with pytest.raises(ConfigError, match="backbone options such as --decode"):
        build_bank(bank.root, bank.spec, other)
    record = json.loads((bank.root / "bank.json").read_text())
    assert record["backbone"]["settings"]["decode"] == bank.backbone.decode
    old = dict(record, backbone={k: v for k, v in record["backbone"].items() if k != "settings"})
    (bank.root / "bank.json").write_text(json.dumps(old))
    try:
        build_bank(bank.root, bank.spec, bank.backbone)
    finally:
        (bank.root / "bank.json").write_text(json.dumps(record))
