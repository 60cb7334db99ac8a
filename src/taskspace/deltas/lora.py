"""LoRA (Hu et al. 2021): ``W x + s · B A x`` on chosen projections, ``s = alpha / r``.

theta layout, for every targeted projection in canonical site order (stacks, blocks, self- then
cross-attention q, k, v, o, then feed-forward in/out):

    ``<site>.lora_A``  [r, in_features]    (peft's ``lora_A.weight``)
    ``<site>.lora_B``  [out_features, r]   (peft's ``lora_B.weight``)

Initialisation as in the paper and peft: A kaiming-uniform, B = 0, so the initial theta is neutral.
UDT's setting is r = 10, alpha = 16 (s = 1.6) on q and v of self- and cross-attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..backbones.sites import LinearSite
from ..errors import ConfigError
from ..config import option
from .base import DeltaMethod, MethodConfig, add_to_output, kaiming_uniform_, register

ROLES = ("q", "k", "v", "o", "ffn_in", "ffn_out")


def distinct_rows(views: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """For a per-example theta that is not being trained and holds repeated rows (an evaluation batch of a few
    thetas, each example repeated per option): each distinct row's first index and every row's group; None when
    every row differs or a gradient must flow (grouping by value could merge rows of different sources)."""
    parts = list(views.values())
    if any(p.requires_grad for p in parts) or parts[0].shape[0] < 2:
        return None
    flat = torch.cat([p.detach().reshape(p.shape[0], -1) for p in parts], dim=1)
    unique, inverse = torch.unique(flat, dim=0, return_inverse=True)
    if unique.shape[0] == flat.shape[0]:
        return None
    first = torch.full((unique.shape[0],), flat.shape[0], dtype=torch.long, device=flat.device)
    first = first.scatter_reduce(0, inverse, torch.arange(flat.shape[0], device=flat.device), reduce="amin")
    return first, inverse


@dataclass
class LoRAConfig(MethodConfig):
    r: int = option(8, "rank of the update B A")
    alpha: float = option(16.0, "scale numerator: the update is multiplied by alpha / r")
    targets: tuple[str, ...] = option(("q", "v"), f"projections to adapt, among {', '.join(ROLES)}")
    attention: tuple[str, ...] = option(("self", "cross"), "which attention modules q/k/v/o refer to: self, cross")


@register
class LoRA(DeltaMethod):
    """LoRA: low-rank updates s·B A added to chosen projections."""

    name = "lora"
    default_lr = 2e-3
    config_class = LoRAConfig
    has_neutral = True
    neutral_slices = (".lora_B",)

    def validate(self) -> None:
        c = self.config
        if c.r < 1:
            raise ConfigError(f"lora r={c.r}: expected a positive rank")
        bad = [t for t in c.targets if t not in ROLES]
        if bad or not c.targets:
            raise ConfigError(f"lora targets={list(c.targets)}: expected a non-empty subset of {list(ROLES)}")
        if not c.attention or any(a not in ("self", "cross") for a in c.attention):
            raise ConfigError(f"lora attention={list(c.attention)}: expected a subset of ['self', 'cross']")

    @property
    def scale(self) -> float:
        return self.config.alpha / self.config.r

    def target_sites(self) -> list[LinearSite]:
        c = self.config
        sites: list[LinearSite] = []
        for block in self.backbone.sites.blocks:
            for kind, att in block.attentions():
                if kind.split("_")[0] in c.attention:
                    sites.extend(getattr(att, role) for role in ("q", "k", "v", "o") if role in c.targets)
            if "ffn_in" in c.targets:
                sites.extend(block.ffn_in)
            if "ffn_out" in c.targets:
                sites.append(block.ffn_out)
        return sites

    def _entries(self):
        r = self.config.r
        out = []
        for s in self.target_sites():
            out.append((f"{s.name}.lora_A", (r, s.in_features)))
            out.append((f"{s.name}.lora_B", (s.out_features, r)))
        return out

    def _fill_init(self, theta, generator):
        for s in self.target_sites():
            kaiming_uniform_(self.layout.view(theta, f"{s.name}.lora_A"), s.in_features, generator)

    def _install(self, views, per_example):
        by_module: dict[int, tuple[torch.nn.Module, list]] = {}
        for s in self.target_sites():
            entry = by_module.setdefault(id(s.module), (s.module, []))
            entry[1].append((s, views[f"{s.name}.lora_A"], views[f"{s.name}.lora_B"]))
        scale = self.scale
        groups = distinct_rows(views) if per_example else None
        handles = []
        for module, items in by_module.values():

            def edit(x, out, items=items):
                for site, a, b in items:
                    a, b = a.to(x.dtype), b.to(x.dtype)
                    if groups is not None:
                        delta = self._grouped(x, a, b, groups)
                    elif per_example:
                        a, b = self.backbone.rows(a), self.backbone.rows(b)
                        delta = (x @ a.transpose(-1, -2)) @ b.transpose(-1, -2)
                    else:
                        delta = (x @ a.t()) @ b.t()
                    out = add_to_output(out, delta * scale, site.out_offset, site.out_features)
                return out

            handles.append(self.backbone.add_output_edit(module, edit))
        return handles

    def _grouped(self, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, groups) -> torch.Tensor:
        """The per-example update computed once per distinct theta row: the rows the model runs (examples, or
        examples x options) are split by the theta they carry, and no per-row copy of A and B is made."""
        first, inverse = groups
        rows = self.backbone._row_index
        which = inverse if rows is None else inverse.index_select(0, rows)
        delta = x.new_zeros(*x.shape[:-1], b.shape[-2])
        for u in range(first.numel()):
            idx = (which == u).nonzero().flatten()
            if idx.numel():
                r = int(first[u])
                delta.index_copy_(0, idx, (x.index_select(0, idx) @ a[r].t()) @ b[r].t())
        return delta
