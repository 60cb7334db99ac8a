"""UDT's simplified variant: one trainable intrinsic vector per training task, shared by all methods, and one
trainable up-projection per method; the loss is the mean task loss over methods. No bank and no
down-projections are needed, so full fine-tuning can join through a Fastfood up-projection with trainable G
(the paper's §5.3 setting): ``theta_finetune = up(I)`` changes every backbone weight.

The fitted subspace keeps the training tasks' vectors (:attr:`Subspace.task_vectors`).

Two forms of the up-projections (``anchor``). taskspace's, the default: ``theta_m = anchor_m + up_m(I)`` with the
method's random initial values as its anchor and ``up_m`` UDT's bias-free ``Linear(y -> D_m)`` from nn.Linear's
start, so every decoded solution starts near a working initialisation whatever the method (LoRA's A is not zero, a
prefix has its P and MLP), and subspaces fitted before the option keep their meaning. The authors' code's
(``anchor="none"``): anchor-free hypernetworks, ``theta_m = up_m(I)``, every weight from N(0, 0.02); adapter and
LoRA through a bias-free linear map, the prefix through a linear map *with* a bias (zero at the start) that gives
every layer's keys and values directly, so the prefix method must be without its re-parameterisation
(``--opt prefix.reparam=false``). Fine-tuning keeps its Fastfood form in both (its initial theta is zero).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ...config import Config, at_least, option, positive
from ...deltas import METHODS, DeltaMethod
from ...errors import ConfigError
from ...projections import Fastfood, LinearProjection, Projection, UDTUp
from ...train import TrainConfig
from ..multitask import mixed_loss
from ..space import MethodSpace, Subspace
from .base import FitData, Finder, register
from .unified import CODE_INIT_STD, udt_training

ANCHORS = ("init", "none")


@dataclass
class SharedConfig(Config):
    methods: tuple[str, ...] = option(("adapter", "prefix", "lora"), "the methods that share the task vectors",
                                      choices=METHODS, check=lambda v: None if len(v) >= 1 else "at least one method")
    d: int = option(100, "intrinsic dimension (UDT's y)", check=at_least(1))
    seed: int = option(0, "seed of the task vectors, the projections and the data order")
    vector_lr_scale: float = option(0.5, "learning-rate multiplier of the task vectors (the paper: half)",
                                    check=positive("number"))
    init_std: float = option(0.02, "standard deviation of the task vectors' initialisation", check=positive("number"))
    anchor: str = option("init", "what a method's theta is decoded around: init (its random initial values, "
                                 "taskspace's form) or none (the authors' code: anchor-free hypernetworks from "
                                 "N(0, 0.02), the prefix's keys and values from a biased linear map; needs "
                                 "--opt prefix.reparam=false)", choices=ANCHORS, since="0.2")
    train: TrainConfig = option(help="training settings", factory=udt_training)


class _SharedModel(nn.Module):
    def __init__(self, vectors: torch.Tensor, up: dict[str, Projection]):
        super().__init__()
        self.vectors = nn.Parameter(vectors)
        self.up = nn.ModuleDict(up)


def up_projection_for(method: DeltaMethod, d: int, seed: int, anchor: str) -> Projection:
    """The up-projection of a method in the shared variant: linear, or Fastfood with trainable G for a method
    whose theta is too large for a d x D matrix (full fine-tuning: one transform per weight tensor). With
    ``anchor="none"``, the authors' code's hypernetwork: a linear map from N(0, 0.02), with a bias for the prefix."""
    if not method.supports_per_example:
        return Fastfood(d, [s.shape for s in method.layout.slices], mode="per_tensor", seed=seed, trainable_G=True)
    if anchor == "none":
        if method.name == "prefix" and method.config.reparam:
            raise ConfigError("--anchor none: the authors' code generates the prefix's keys and values directly; "
                              "pass --opt prefix.reparam=false")
        return LinearProjection(d, method.size, bias=method.name == "prefix", init="normal", std=CODE_INIT_STD,
                                seed=seed)
    return UDTUp(d, method.size, seed=seed)


def anchor_for(method: DeltaMethod, anchor: str, generator: torch.Generator) -> torch.Tensor:
    """What ``method``'s theta is decoded around: its random initial values (``init``) or zero (``none``; the
    initial values are drawn from ``generator`` either way, so that the draws after them do not depend on the
    form)."""
    initial = method.init(generator)
    return torch.zeros_like(initial) if anchor == "none" else initial


@register
class Shared(Finder):
    name = "shared"
    config_class = SharedConfig
    summary = "UDT's simplified variant: a shared trainable vector per task and an up-projection per method (no bank)"

    def fit(self, data: FitData, work_dir: str | Path | None = None) -> Subspace:
        c = self.config
        backbone = data.backbone
        tasks = data.multitask()
        names = list(c.methods)
        delta_methods = {m: data.method(m) for m in names}
        generator = torch.Generator().manual_seed(c.seed)
        anchors = {m: anchor_for(delta_methods[m], c.anchor, generator) for m in names}
        vectors = torch.randn(len(data.tasks), c.d, generator=generator) * c.init_std
        model = _SharedModel(vectors, {m: up_projection_for(delta_methods[m], c.d, c.seed + 1 + i, c.anchor)
                                       for i, m in enumerate(names)}).to(backbone.device)

        def loss_fn(examples, targets):
            index = tasks.index(examples, backbone.device)
            total = 0.0
            for m in names:
                total = total + mixed_loss(backbone, delta_methods[m], examples, targets, index,
                                           lambda rows, m=m: anchors[m] + model.up[m](model.vectors[index[rows]]))
            return total / len(names)

        def dev_score() -> float:
            scores = [tasks.mean_dev_score(backbone, delta_methods[m],
                                           lambda i, m=m: anchors[m] + model.up[m](model.vectors[i]),
                                           data.eval_batch_size) for m in names]
            return sum(scores) / len(scores)

        # The paper trains the shared vectors at a fraction of the projections' learning rate.
        up = [p for p in model.up.parameters() if p.requires_grad]
        result = self._train(model, loss_fn, tasks, dev_score, backbone, work_dir,
                             groups=[([model.vectors], c.vector_lr_scale), (up, 1.0)])
        spaces = {m: MethodSpace(delta_methods[m], anchors[m], model.up[m].freeze()) for m in names}
        return Subspace(self.name, c.d, spaces, backbone, info=self.info(data, result),
                        task_vectors=model.vectors.detach().clone())
