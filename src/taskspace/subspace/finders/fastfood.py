"""A random Fastfood subspace of all backbone weights: Aghajanyan et al.'s DID, and SAID with per-tensor scales."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ...config import Config, at_least, option
from ...projections import Fastfood
from ..space import MethodSpace, Subspace
from .base import FitData, Finder, register


@dataclass
class FastfoodConfig(Config):
    d: int = option(100, "intrinsic dimension", check=at_least(1))
    fastfood_mode: str = option("per_tensor", "one transform per weight tensor, or one over all weights",
                                choices=("per_tensor", "global"))
    said: bool = option(False, "per-tensor scales (SAID) rather than DID")
    seed: int = option(0, "seed of the random transform")


@register
class FastfoodFinder(Finder):
    name = "fastfood"
    config_class = FastfoodConfig
    summary = "a random Fastfood subspace of all backbone weights (DID; SAID with --said)"
    needs_tasks = False

    def method_names(self) -> list[str]:
        return ["finetune"]

    def fit(self, data: FitData, work_dir: str | Path | None = None) -> Subspace:
        c = self.config
        method = data.method(self.method_names()[0])
        proj = Fastfood(c.d, [s.shape for s in method.layout.slices], mode=c.fastfood_mode, seed=c.seed, said=c.said)
        proj = proj.to(data.backbone.device).freeze()
        recipe = "fastfood-said" if c.said else "fastfood"
        anchor = torch.zeros(method.size, device=data.backbone.device)
        return Subspace(recipe, c.d, {"finetune": MethodSpace(method, anchor, proj)}, data.backbone,
                        info={"config": c.identity()})
