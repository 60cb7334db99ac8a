"""The unified delta-tuning subspace (UDT): one subspace for several delta methods.

**Subspace approximation** (:func:`fit_unified`). For every method m a down-projection
``Linear(D_m -> y) -> tanh -> Linear(y -> y)`` and an up-projection ``Linear(y -> D_m)`` (no biases) are fitted
to the bank's solutions of the training tasks, as changes from their common initialisation
(``delta_m = theta_m - theta_init_m``; the init is the method's anchor). For a batch mixing tasks, each method's
solution of each example's task is projected down, ``I_m = down_m(delta_m)``; the intrinsic vectors are mixed
with random weights drawn once per step in the paper's way (for methods in order: ``w_1 ~ U(0, 1)``,
``w_2 ~ U(0, 1 - w_1)``, ..., the last takes the rest; with adapter, prefix, LoRA that is alpha, beta,
1 - alpha - beta), ``I = sum_m w_m I_m``; every method is decoded from ``I`` and

    L = sum_m [ dist_weight * ||up_m(I) - delta_m||^2 + task_loss(anchor_m + up_m(I)) ]

(the squared distance is summed over theta's elements and averaged over the batch, as in the paper).
Validation is deterministic: equal weights ``1/M``; its score is the mean over methods and training tasks of
the dev score (the original drew random weights at validation too).

**The simplified variant** (:func:`fit_shared`). One trainable intrinsic vector per training task, shared by all
methods, and one trainable up-projection per method; the loss is the mean task loss over methods. No bank and
no down-projections are needed, so full fine-tuning can join through a Fastfood up-projection with trainable G
(the paper's §5.3 setting): ``theta_finetune = up(I)`` changes every backbone weight.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..backbones import Backbone
from ..deltas import DeltaMethod, build_method
from ..errors import ConfigError
from ..projections import Fastfood, Projection, UDTDown, UDTUp
from ..train import TrainConfig, log_to, train
from .bank import Bank
from .ipt import _config_dict
from .multitask import MultiTask
from .space import MethodSpace, Subspace


def mixing_weights(m: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """UDT's random interpolation weights for ``m`` methods: w_1 ~ U(0,1), w_k ~ U(0, 1 - sum_{j<k} w_j), the
    last the remainder (for three methods: alpha, beta, 1 - alpha - beta)."""
    weights, rest = [], 1.0
    for _ in range(m - 1):
        w = float(torch.rand((), generator=generator)) * rest
        weights.append(w)
        rest -= w
    weights.append(rest)
    return torch.tensor(weights)


def _udt_training() -> TrainConfig:
    """Adafactor at a constant learning rate, as UDT trains (SPEC §4 gives lr 1e-4 for its long multi-task runs;
    the default here, 1e-3, suits runs of a few hundred steps)."""
    return TrainConfig(optimizer="adafactor", schedule="constant", lr=1e-3, steps=300, eval_every=100)


@dataclasses.dataclass
class UnifiedConfig:
    y: int = 100
    dist_weight: float = 10.0
    seed: int = 0
    train: TrainConfig = dataclasses.field(default_factory=_udt_training)


class _Projections(nn.Module):
    def __init__(self, down: dict[str, Projection], up: dict[str, Projection]):
        super().__init__()
        self.down = nn.ModuleDict(down)
        self.up = nn.ModuleDict(up)


def fit_unified(
    bank: Bank,
    methods: Sequence[str],
    tasks: Sequence[str],
    config: UnifiedConfig,
    out_dir: str | Path,
    *,
    eval_batch_size: int = 32,
) -> Subspace:
    """UDT subspace approximation on ``tasks``' bank solutions of ``methods``; saves into ``out_dir``."""
    if len(methods) < 2:
        raise ConfigError(f"a unified subspace needs at least two methods, got {list(methods)}")
    out_dir = Path(out_dir)
    backbone = bank.backbone
    dev = backbone.device
    data = MultiTask.load(tasks, bank.spec.data_dir, k=bank.spec.k, seed=bank.spec.data_seed)
    data.check(backbone)
    delta_methods = {m: bank.method(m) for m in methods}
    anchors, deltas = {}, {}
    for m in methods:
        thetas, init = bank.stacked(tasks, m)
        anchors[m], deltas[m] = init.to(dev), (thetas - init).to(dev)
    proj = _Projections(
        {m: UDTDown(delta_methods[m].size, config.y, seed=config.seed + 2 * i) for i, m in enumerate(methods)},
        {m: UDTUp(config.y, delta_methods[m].size, seed=config.seed + 2 * i + 1) for i, m in enumerate(methods)},
    ).to(dev)

    def decode_all(index: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        mixed = sum(w * proj.down[m](deltas[m][index]) for w, m in zip(weights.tolist(), methods))
        return {m: proj.up[m](mixed) for m in methods}

    def loss_fn(examples, targets):
        index = data.index(examples, dev)
        # Drawn from the global generator, which the training loop checkpoints: a resumed run draws the same.
        decoded = decode_all(index, mixing_weights(len(methods)))
        batch = backbone.collate(examples, targets)
        total = 0.0
        for m in methods:
            with delta_methods[m].bind(anchors[m] + decoded[m]):
                task_loss = backbone.loss(batch).mean()
            distance = (decoded[m] - deltas[m][index]).square().sum(-1).mean()  # ||decoded - delta||^2 per example
            total = total + config.dist_weight * distance + task_loss
        return total

    equal = torch.full((len(methods),), 1.0 / len(methods))

    def dev_score() -> float:
        with torch.no_grad():
            decoded = decode_all(torch.arange(len(tasks), device=dev), equal)
        per_method = []
        for m in methods:
            scores = data.dev_scores(backbone, delta_methods[m], anchors[m] + decoded[m], eval_batch_size)
            per_method.append(sum(scores.values()) / len(scores))
        return sum(per_method) / len(per_method)

    result = train(proj, loss_fn, data.train_examples(), config.train, evaluate=dev_score, run_dir=out_dir / "fit",
                   backbone=backbone, log=log_to(out_dir / "fit" / "log.jsonl"))
    proj.load_state_dict(result.best_state)
    spaces = {m: MethodSpace(delta_methods[m], anchors[m], proj.up[m].freeze(), proj.down[m].freeze()) for m in methods}
    space = Subspace("unified", config.y, spaces, backbone,
                     info={"tasks": list(tasks), "bank": str(bank.root), "unified": _config_dict(config),
                           "best_step": result.best_step, "dev": result.best_score})
    space.save(out_dir)
    return space


# ----------------------------------------------------------------------------------------------------------------


def task_loss(backbone: Backbone, method: DeltaMethod, examples, targets, index: torch.Tensor, thetas) -> torch.Tensor:
    """Mean loss of a batch mixing tasks, each example with its task's theta ``thetas(index rows)``.

    Methods that take per-example theta get one ``[B, D]`` bind; full fine-tuning (one model copy per theta)
    is run once per distinct task in the batch, each with its rows' share of the mean.
    """
    if method.supports_per_example:
        with method.bind(thetas(index)):
            return backbone.loss(backbone.collate(examples, targets)).mean()
    total = 0.0
    for t in index.unique().tolist():
        rows = (index == t).nonzero().flatten().tolist()
        with method.bind(thetas(index[rows[0]])):
            loss = backbone.loss(backbone.collate([examples[i] for i in rows], [targets[i] for i in rows])).sum()
        total = total + loss
    return total / len(examples)


@dataclasses.dataclass
class SharedConfig:
    y: int = 100
    seed: int = 0
    vector_lr_scale: float = 0.5
    init_std: float = 0.02
    train: TrainConfig = dataclasses.field(default_factory=_udt_training)


class _SharedModel(nn.Module):
    def __init__(self, vectors: torch.Tensor, up: dict[str, Projection], vector_lr_scale: float):
        super().__init__()
        self.vectors = nn.Parameter(vectors)
        self.up = nn.ModuleDict(up)
        self.vector_lr_scale = vector_lr_scale

    def param_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        """(parameters, learning-rate multiplier): the paper trains the shared vectors at half the rate."""
        up = [p for p in self.up.parameters() if p.requires_grad]
        return [([self.vectors], self.vector_lr_scale), (up, 1.0)]


def up_projection_for(method: DeltaMethod, y: int, seed: int) -> Projection:
    """The up-projection of a method in the shared variant: linear, or Fastfood with trainable G for full
    fine-tuning (a y x D matrix would not fit)."""
    if method.name == "finetune":
        shapes = [tuple(p.shape) for p in method.backbone.base_parameters.values()]
        return Fastfood(y, shapes, mode="per_tensor", seed=seed, trainable_G=True)
    return UDTUp(y, method.size, seed=seed)


def fit_shared(
    backbone: Backbone,
    methods: dict[str, dict],
    tasks: Sequence[str],
    data_dir: str,
    config: SharedConfig,
    out_dir: str | Path,
    *,
    k: int = 16,
    data_seed: int = 100,
    eval_batch_size: int = 32,
) -> Subspace:
    """UDT's simplified variant: a shared trainable vector per task and a trainable up-projection per method."""
    out_dir = Path(out_dir)
    dev = backbone.device
    data = MultiTask.load(tasks, data_dir, k=k, seed=data_seed)
    data.check(backbone)
    names = list(methods)
    delta_methods = {m: build_method(m, backbone, opts) for m, opts in methods.items()}
    generator = torch.Generator().manual_seed(config.seed)
    anchors = {m: delta_methods[m].init(generator) for m in names}
    vectors = torch.randn(len(tasks), config.y, generator=generator) * config.init_std
    model = _SharedModel(
        vectors, {m: up_projection_for(delta_methods[m], config.y, config.seed + 1 + i) for i, m in enumerate(names)},
        config.vector_lr_scale,
    ).to(dev)

    def loss_fn(examples, targets):
        index = data.index(examples, dev)
        total = 0.0
        for m in names:
            total = total + task_loss(backbone, delta_methods[m], examples, targets, index,
                                      lambda rows, m=m: anchors[m] + model.up[m](model.vectors[rows]))
        return total / len(names)

    def dev_score() -> float:
        scores = []
        with torch.no_grad():
            for m in names:
                thetas = anchors[m] + model.up[m](model.vectors)
                s = data.dev_scores(backbone, delta_methods[m], thetas, eval_batch_size)
                scores.append(sum(s.values()) / len(s))
        return sum(scores) / len(scores)

    result = train(model, loss_fn, data.train_examples(), config.train, evaluate=dev_score, run_dir=out_dir / "fit",
                   backbone=backbone, log=log_to(out_dir / "fit" / "log.jsonl"))
    model.load_state_dict(result.best_state)
    spaces = {m: MethodSpace(delta_methods[m], anchors[m], model.up[m].freeze()) for m in names}
    space = Subspace("shared", config.y, spaces, backbone,
                     info={"tasks": list(tasks), "shared": _config_dict(config), "best_step": result.best_step,
                           "dev": result.best_score, "task_vectors": model.vectors.detach().cpu().tolist()})
    space.save(out_dir)
    return space
