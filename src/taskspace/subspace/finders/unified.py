"""The unified delta-tuning subspace (UDT): one subspace for several delta methods, fitted to a bank.

**Subspace approximation**. For every method m a down-projection ``Linear(D_m -> y) -> tanh -> Linear(y -> y)``
and an up-projection ``Linear(y -> D_m)`` (no biases) are fitted to the bank's solutions of the training tasks,
as changes from their common initialisation (``delta_m = theta_m - theta_init_m``; the init is the method's
anchor). For a batch mixing tasks, each method's solution of each example's task is projected down,
``I_m = down_m(delta_m)``; the intrinsic vectors are mixed with random weights drawn once per step in the paper's
way (for methods in order: ``w_1 ~ U(0, 1)``, ``w_2 ~ U(0, 1 - w_1)``, ..., the last takes the rest; with
adapter, prefix, LoRA that is alpha, beta, 1 - alpha - beta; the micro-batches of a step, with
``micro_batch_size``, share the step's draw), ``I = sum_m w_m I_m``; every method is decoded from ``I`` and

    L = sum_m [ dist_weight * ||up_m(I) - delta_m||^2 + task_loss(anchor_m + up_m(I)) ]

(the squared distance is summed over theta's elements and averaged over the batch, as in the paper:
``distance="paper"``). The authors' code measures it differently: ``torch.dist(up_m(I_m), delta_m)``, the
distance (not squared) of the solution decoded from the method's *own* intrinsic vector (``distance="code"``).
Validation is deterministic: equal weights ``1/M``; its score is the mean over methods and training tasks of
the dev score (the original drew random weights at validation too). y is called d here, as in every finder.

The projections start from nn.Linear's uniform initialisation by default (``up_init`` / ``down_init``
``uniform``); the authors' code draws every weight of both from N(0, 0.02) (its ``init_weight``: ``normal``, the
``udt-paper`` preset's), and ``up_init="zeros"`` starts every decoded solution at its method's anchor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ...config import Config, at_least, non_negative, option
from ...deltas import METHODS
from ...projections import Projection, UDTDown, UDTUp
from ...microbatch import once_per_step
from ...train import TrainConfig
from ..multitask import mixed_loss
from ..space import MethodSpace, Subspace
from .base import FitData, Finder, register


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


def udt_training() -> TrainConfig:
    """Adafactor at a constant learning rate, as UDT trains (SPEC §4 gives lr 1e-4 for its long multi-task runs;
    the default here, 1e-3, suits runs of a few hundred steps)."""
    return TrainConfig(optimizer="adafactor", schedule="constant", lr=1e-3, steps=300, eval_every=100)


DISTANCES = ("paper", "code")
UP_INITS = ("uniform", "normal", "zeros")
DOWN_INITS = ("uniform", "normal")
#: The standard deviation of the authors' code's projections (``init_weight``: N(0, 0.02)).
CODE_INIT_STD = 0.02


def start_(projection: Projection, how: str, seed: int) -> Projection:
    """Set ``projection``'s weights to its start: ``uniform`` leaves nn.Linear's (drawn at construction), ``normal``
    draws every weight from N(0, 0.02) with a generator seeded by ``seed`` (the authors' code's start), ``zeros``
    zeroes them. Returns the projection."""
    with torch.no_grad():
        if how == "normal":
            generator = torch.Generator().manual_seed(seed)
            for weight in projection.parameters():
                weight.copy_(torch.randn(weight.shape, generator=generator) * CODE_INIT_STD)
        elif how == "zeros":
            for weight in projection.parameters():
                weight.zero_()
    return projection


def distance_term(form: str, from_mixture: torch.Tensor, from_own: torch.Tensor | None,
                  delta: torch.Tensor) -> torch.Tensor:
    """The mean over the batch of UDT's distance between decoded and original solutions ``[B, D]``: squared, of
    the solution decoded from the mixture (``paper``), or not squared, of the one decoded from the method's own
    intrinsic vector (``code``)."""
    if form == "paper":
        return (from_mixture - delta).square().sum(-1).mean()
    return (from_own - delta).norm(dim=-1).mean()


def _several(v) -> str | None:
    return None if len(v) >= 2 and len(set(v)) == len(v) else "at least two different methods"


@dataclass
class UnifiedConfig(Config):
    methods: tuple[str, ...] = option(("adapter", "prefix", "lora"), "the methods whose solutions share the subspace",
                                      choices=METHODS, check=_several)
    d: int = option(100, "intrinsic dimension (UDT's y)", check=at_least(1))
    dist_weight: float = option(10.0, "weight of the distance loss", check=non_negative)
    distance: str = option("paper", "the distance term: paper (||up_m(mixture) - delta_m||^2) or code (the "
                                    "authors' code: ||up_m(I_m) - delta_m||, from the method's own vector)",
                           choices=DISTANCES)
    up_init: str = option("uniform", "initialisation of the up-projections: uniform (nn.Linear's default), normal "
                                     "(N(0, 0.02), the authors' code) or zeros (every decoded solution starts at "
                                     "its method's anchor; on SmolLM2 the uniform start leaves the fit far from the "
                                     "solutions after 100 steps, docs/subspaces.md)", choices=UP_INITS, since="0.2")
    down_init: str = option("uniform", "initialisation of the down-projections: uniform (nn.Linear's default) or "
                                       "normal (N(0, 0.02), the authors' code)", choices=DOWN_INITS, since="0.2")
    seed: int = option(0, "seed of the projections and of the data order")
    train: TrainConfig = option(help="training settings", factory=udt_training)


class _Projections(nn.Module):
    def __init__(self, down: dict[str, Projection], up: dict[str, Projection]):
        super().__init__()
        self.down = nn.ModuleDict(down)
        self.up = nn.ModuleDict(up)


@register
class Unified(Finder):
    name = "unified"
    config_class = UnifiedConfig
    summary = "UDT's subspace approximation: joint projections of several methods' bank solutions"
    needs_bank = True

    def fit(self, data: FitData, work_dir: str | Path | None = None) -> Subspace:
        c = self.config
        methods = list(c.methods)
        backbone = data.backbone
        data.require_bank(self.name)
        tasks = data.multitask()
        delta_methods = {m: data.method(m) for m in methods}
        anchors, deltas = {}, {}
        for m in methods:
            thetas, anchors[m] = data.solutions(m)
            deltas[m] = thetas - anchors[m]
        proj = _Projections(
            {m: start_(UDTDown(delta_methods[m].size, c.d, seed=c.seed + 2 * i), c.down_init, c.seed + 2 * i)
             for i, m in enumerate(methods)},
            {m: start_(UDTUp(c.d, delta_methods[m].size, seed=c.seed + 2 * i + 1), c.up_init, c.seed + 2 * i + 1)
             for i, m in enumerate(methods)},
        ).to(backbone.device)

        def own_vectors(index: torch.Tensor) -> dict[str, torch.Tensor]:
            return {m: proj.down[m](deltas[m][index]) for m in methods}

        def mixed(own: dict[str, torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
            return sum(w * own[m] for w, m in zip(weights.tolist(), methods))

        def loss_fn(examples, targets):
            index = tasks.index(examples, backbone.device)
            own = own_vectors(index)
            # Drawn from the global generator, which the training loop checkpoints: a resumed run draws the same.
            # Once per step: micro-batches of a step share the step's weights.
            intrinsic = mixed(own, once_per_step("udt.mixing_weights", lambda: mixing_weights(len(methods))))
            total = 0.0
            for m in methods:
                decoded = proj.up[m](intrinsic)
                task_loss = mixed_loss(backbone, delta_methods[m], examples, targets, index,
                                       lambda rows, m=m, decoded=decoded: anchors[m] + decoded[rows])
                from_own = proj.up[m](own[m]) if c.distance == "code" else None
                distance = distance_term(c.distance, decoded, from_own, deltas[m][index])
                total = total + c.dist_weight * distance + task_loss
            return total

        equal = torch.full((len(methods),), 1.0 / len(methods))

        def dev_score() -> float:
            scores = []
            for m in methods:
                def theta_of(i: int, m=m) -> torch.Tensor:
                    own = own_vectors(torch.tensor([i], device=backbone.device))
                    return anchors[m] + proj.up[m](mixed(own, equal)[0])

                scores.append(tasks.mean_dev_score(backbone, delta_methods[m], theta_of, data.eval_batch_size))
            return sum(scores) / len(scores)

        result = self._train(proj, loss_fn, tasks, dev_score, backbone, work_dir)
        spaces = {m: MethodSpace(delta_methods[m], anchors[m], proj.up[m].freeze(), proj.down[m].freeze())
                  for m in methods}
        return Subspace(self.name, c.d, spaces, backbone, info=self.info(data, result))
