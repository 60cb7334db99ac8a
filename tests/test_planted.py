"""A planted subspace: the pipeline finds a low-dimensional structure that is known to be there.

Each task's solution lies on a known d = 2 dimensional manifold, ``theta_i = anchor + A z_i``, and the task is
*defined* by it: its answers (one of two options, ranked) are what the 260K-parameter Llama answers with
``theta_i`` bound, so ``theta_i`` scores 100 % and the frozen model does not. Then

MSF fitted to twelve such solutions reconstructs held-out points of the manifold, and intrinsic subspace tuning
on a held-out task (2 trainable numbers) reaches almost that task's planted score, while IST in IPT's random
auto-encoder at the same d does not. This separates "the code works" from "this backbone has a subspace": here
there is one by construction.

The UDT counterpart plants prompt (D = 128) and LoRA r = 1 (D = 1,120) solutions that share z,
``theta_m = anchor_m + A_m z``, on tasks where both answer alike. UDT's fitted up-projections span the planted
directions, hold unseen points of the manifold, and in the same coordinates for both methods (what transfer
needs); the untrained projections hold none of it. UDT's down-projection ``Linear(D -> d) -> tanh -> Linear``
saturates on LoRA's larger vectors under per-element optimisers (held-out reconstruction through it stayed at
relative errors of 0.3-0.6 in a reconstruction-only measurement, while the up-projections converged), which is
why the test asks about the subspace and not about the encoder's reconstruction.
"""

from __future__ import annotations

import json

import pytest
import torch

from taskspace.backbones import load_backbone
from taskspace.deltas import build_method
from taskspace.evaluation import evaluate, predict
from taskspace.projections import UDTUp
from taskspace.subspace import (FitData, MSFConfig, RandomAEConfig, SubspaceTuneConfig, UnifiedConfig, build_finder,
                                 subspace_tune)
from taskspace.tasks import Example, load_task
from taskspace.train import TrainConfig

#: Every test here trains or fits for seconds to minutes: the fast tier (-m "not slow") leaves them out.
pytestmark = pytest.mark.slow

D_PLANTED = 2
TRAIN_TASKS = [f"planted{i}" for i in range(12)]
HELD_OUT = ["held0", "held1"]
OPTIONS = ("up", "she")  # the frozen model splits the inputs 17 / 31 between them: both answers are reachable


@pytest.fixture(scope="module")
def llama(shared_dir):
    # the plain template, under which the planted tasks were sized (the frozen model fails them)
    return load_backbone(f"{shared_dir}/models/stories260K", decode="rank", template="plain")


@pytest.fixture(scope="module")
def texts(data_dir):
    return [e.input for e in load_task("glue-sst2", str(data_dir)).test[:48]]


def _write_task(root, name, texts, answers):
    folder = root / name
    folder.mkdir(parents=True)
    for split, rows in (("train", range(0, 16)), ("dev", range(16, 32)), ("test", range(32, 48))):
        (folder / f"{split}.jsonl").write_text("".join(
            json.dumps({"input": texts[i], "output": answers[i], "options": list(OPTIONS)}) + "\n" for i in rows))


def _plant(root, backbone, method, thetas, texts):
    """One task per theta, answered as the model answers with that theta bound (to ``[task] input``, as taskspace
    formats every input)."""
    for name, theta in thetas.items():
        probe = [Example(t, (OPTIONS[0],), OPTIONS, task=name) for t in texts]
        _write_task(root, name, texts, predict(backbone, probe, method=method, theta=theta, batch_size=48))


class PlantedData(FitData):
    """The training tasks with their planted solutions standing in for a bank's."""

    def __init__(self, backbone, tasks, data_dir, methods, solutions, anchors):
        super().__init__(backbone, tasks, data_dir=str(data_dir), method_options=methods)
        self.planted, self.anchors = solutions, anchors

    def require_bank(self, finder):
        return None

    def solutions(self, method):
        return torch.stack([self.planted[method][t] for t in self.tasks]), self.anchors[method]


def _score(backbone, method, theta, task):
    return evaluate(backbone, task.test, task.metric, method=method, theta=theta)[0]


def _ist(space, folder, task, method, data_dir, out, lr):
    space.save(folder)
    config = SubspaceTuneConfig(task=task, method=method, data_dir=str(data_dir), max_test_examples=None,
                                train=TrainConfig(lr=lr, steps=60, batch_size=8, eval_every=20, progress=False))
    return subspace_tune(space, folder, config, out)


def _held_out(backbone, method, theta_of, texts, g, n=30):
    """Two held-out points of the manifold whose tasks the frozen model answers worst (so that reaching them
    means something): of ``n`` random z, the two whose answers agree least with the frozen model's."""
    probe = [Example(t, (OPTIONS[0],), OPTIONS, task=HELD_OUT[0]) for t in texts]
    frozen = predict(backbone, probe, batch_size=48)

    def agreement(z):
        answers = predict(backbone, probe, method=method, theta=theta_of(z), batch_size=48)
        return sum(a == b for a, b in zip(answers, frozen))

    candidates = sorted((torch.randn(D_PLANTED, generator=g) for _ in range(n)), key=agreement)
    return dict(zip(HELD_OUT, candidates))


def test_ipt_finds_a_planted_prompt_subspace(llama, texts, tmp_path):
    method = build_method("prompt", llama, {"n_tokens": 2})
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(method.size, D_PLANTED, generator=g) * 0.5
    z = {name: torch.randn(D_PLANTED, generator=g) for name in TRAIN_TASKS}
    z.update(_held_out(llama, method, lambda z: basis @ z, texts, g))
    thetas = {name: basis @ z[name] for name in z}
    _plant(tmp_path / "data", llama, method, thetas, texts)
    held = {name: load_task(name, tmp_path / "data") for name in HELD_OUT}
    for name, task in held.items():
        assert _score(llama, method, thetas[name], task) == 1.0  # the planted solution, by construction
    frozen = sum(_score(llama, None, None, task) for task in held.values()) / len(held)
    assert frozen < 0.6

    data = PlantedData(llama, TRAIN_TASKS, tmp_path / "data", {"prompt": {"n_tokens": 2}},
                       {"prompt": thetas}, {"prompt": torch.zeros(method.size)})
    # Reconstruction-led: the planted answers are the teacher's argmax, which its LM loss does not make optimal,
    # so at IPT's alpha = 200 the task loss pulls the auto-encoder off the manifold (measured: the best state on
    # dev stayed the initial one). The test asks whether MSF *can* recover a manifold, so reconstruction weighs
    # more here.
    msf = build_finder("ipt", MSFConfig(method="prompt", d=D_PLANTED, hidden=32, alpha=1e4, lm_loss="mean",
                                        train=TrainConfig(lr=1e-2, steps=200, batch_size=8, eval_every=50,
                                                          progress=False)))
    space = msf.fit(data, work_dir=tmp_path / "msf")
    ms = space["prompt"]
    with torch.no_grad():  # MSF reconstructs points of the manifold it never saw
        for name in HELD_OUT:
            recon = ms.theta(ms.down(thetas[name][None])[0])
            assert (recon - thetas[name]).norm() < 0.15 * thetas[name].norm()
    random_space = build_finder("random-ae", RandomAEConfig(method="prompt", d=D_PLANTED, hidden=32)).fit(
        FitData(llama, [], method_options={"prompt": {"n_tokens": 2}}))
    learnt, random = [], []
    for name in HELD_OUT:
        learnt.append(_ist(space, tmp_path / "space", name, "prompt", tmp_path / "data", tmp_path / f"ist-{name}",
                           lr=0.05)["test"])
        random.append(_ist(random_space, tmp_path / "random", name, "prompt", tmp_path / "data",
                           tmp_path / f"rnd-{name}", lr=0.05)["test"])
    learnt_mean, random_mean = sum(learnt) / len(learnt), sum(random) / len(random)
    # IST with 2 numbers reaches the held-out tasks; the random auto-encoder's 2 numbers do not
    assert learnt_mean >= 0.9, (learnt, random, frozen)
    assert learnt_mean - random_mean >= 0.15, (learnt, random, frozen)




UDT_METHODS = {"prompt": {"n_tokens": 2}, "lora": {"r": 1}}
UDT_SCALE = 0.5  # of the planted directions, for both methods


def _plant_shared(root, backbone, methods, anchors, basis, names, pool, g):
    """One task per name, on the first 48 pooled inputs where both methods' planted solutions
    ``anchor_m + basis_m z`` give the same answer, answered with it, so each method's planted solution scores
    100 %. A z whose methods agree on fewer inputs is drawn again. Returns the z of each task."""
    z = {}
    for name in names:
        while True:
            zi = torch.randn(D_PLANTED, generator=g)
            probe = [Example(t, (OPTIONS[0],), OPTIONS, task=name) for t in pool]
            first, second = (predict(backbone, probe, method=methods[m], theta=anchors[m] + basis[m] @ zi,
                                     batch_size=100) for m in methods)
            rows = [i for i in range(len(pool)) if first[i] == second[i]][:48]
            if len(rows) == 48:
                break
        _write_task(root, name, [pool[i] for i in rows], [first[i] for i in rows])
        z[name] = zi
    return z


def _outside(up, delta):
    """The relative distance of ``delta`` from the column space of ``up`` ``[D, d]``, and the z that gets closest."""
    best = torch.linalg.lstsq(up, delta[:, None]).solution[:, 0]
    return float((up @ best - delta).norm() / delta.norm()), best


def test_udt_finds_a_planted_subspace_shared_by_two_methods(llama, data_dir, tmp_path):
    """UDT's approximation of prompt and LoRA solutions that share a planted z (``theta_m = anchor_m + A_m z``):
    the fitted up-projections span the planted directions, so held-out points of the manifold are in the subspace
    (the same projections untrained hold almost none of them), and in shared coordinates: the z that gives a
    held-out task's prompt solution decodes through LoRA's up-projection into that task's LoRA solution.

    What is not asserted: that subspace tuning reaches held-out tasks and the untrained projections do not, as
    the IPT test above does. On these binary tasks of the 260K model, tuning in a random 2-d direction of prompt
    or LoRA often finds the answers too (measured: 1.0 through the untrained projections against 0.56 through
    the fitted ones on one held-out task), so that comparison does not tell the two apart here."""
    pool = [e.input for e in load_task("glue-sst2", str(data_dir)).test[:200]]
    methods = {m: build_method(m, llama, o) for m, o in UDT_METHODS.items()}
    anchors = {m: methods[m].init(torch.Generator().manual_seed(1)) for m in methods}
    g = torch.Generator().manual_seed(0)
    basis = {m: torch.randn(methods[m].size, D_PLANTED, generator=g) * UDT_SCALE for m in methods}
    z = _plant_shared(tmp_path / "data", llama, methods, anchors, basis, TRAIN_TASKS, pool, g)
    first = load_task(TRAIN_TASKS[0], tmp_path / "data")
    for m in methods:
        assert _score(llama, methods[m], anchors[m] + basis[m] @ z[TRAIN_TASKS[0]], first) == 1.0
    solutions = {m: {t: anchors[m] + basis[m] @ z[t] for t in TRAIN_TASKS} for m in methods}
    data = PlantedData(llama, TRAIN_TASKS, tmp_path / "data", UDT_METHODS, solutions, anchors)
    # Reconstruction-led, as for MSF above (the planted answers are argmax answers, which the task loss does not
    # make optimal), and AdamW with linear decay instead of UDT's constant Adafactor: measured on this bank, 300
    # steps left the up-projections' columns 0.7 % (prompt) and 1.7 % (LoRA) outside the planted span; at
    # dist_weight 10 and a constant 3e-3, 600 steps left 9 % and 28 %.
    udt = build_finder("unified", UnifiedConfig(
        methods=tuple(methods), d=D_PLANTED, dist_weight=1000.0,
        train=TrainConfig(lr=3e-2, steps=300, batch_size=8, eval_every=300, progress=False)))
    space = udt.fit(data, work_dir=tmp_path / "udt")
    untrained = {m: UDTUp(D_PLANTED, methods[m].size, seed=1 + 2 * i) for i, m in enumerate(methods)}  # its init
    held = torch.randn(20, D_PLANTED, generator=g)  # points of the manifold no task was planted at
    with torch.no_grad():
        up = {m: space[m].up.layers[0].weight for m in methods}
        for m in methods:
            q, _ = torch.linalg.qr(basis[m])
            assert (up[m] - q @ (q.T @ up[m])).norm() < 0.05 * up[m].norm(), m
        for point in held:
            delta = {m: basis[m] @ point for m in methods}
            for m in methods:
                assert _outside(up[m], delta[m])[0] < 0.05, (m, point)
                assert _outside(untrained[m].layers[0].weight, delta[m])[0] > 0.5, (m, point)
            # shared coordinates: prompt's z for this point is LoRA's z for it
            z_prompt = _outside(up["prompt"], delta["prompt"])[1]
            assert (up["lora"] @ z_prompt - delta["lora"]).norm() < 0.05 * delta["lora"].norm(), point
