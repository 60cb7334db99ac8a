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
from .base import DeltaMethod, MethodConfig, add_to_output, first_of_groups, kaiming_uniform_, register

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
    return first_of_groups(inverse, unique.shape[0]), inverse


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

    def _install_rows(self, views, rows):
        k = next(iter(views.values())).shape[0]  # the rows are the distinct thetas: no grouping by value needed
        return self._install(views, True, groups=(torch.arange(k, device=rows.device), rows))

    def _install(self, views, per_example, groups=None):
        by_module: dict[int, tuple[torch.nn.Module, list]] = {}
        for s in self.target_sites():
            entry = by_module.setdefault(id(s.module), (s.module, []))
            entry[1].append((s, views[f"{s.name}.lora_A"], views[f"{s.name}.lora_B"]))
        scale = self.scale
        if groups is None and per_example:
            groups = distinct_rows(views)
        memo: dict = {}  # the groups' parts, computed once per row map for all the modules of this binding

        def parts_now():
            rows = self.backbone._row_index
            if "parts" not in memo or memo["rows"] is not rows:
                memo.update(rows=rows, parts=self._parts(groups))
            return memo["parts"]

        handles = []
        for module, items in by_module.values():

            def edit(x, out, items=items):
                parts = parts_now() if groups is not None else None
                for site, a, b in items:
                    a, b = a.to(x.dtype), b.to(x.dtype)
                    if parts is not None:
                        delta = self._grouped(x, a, b, parts)
                    elif per_example:
                        a, b = self.backbone.rows(a), self.backbone.rows(b)
                        delta = (x @ a.transpose(-1, -2)) @ b.transpose(-1, -2)
                    else:
                        delta = (x @ a.t()) @ b.t()
                    out = add_to_output(out, delta * scale, site.out_offset, site.out_features)
                return out

            handles.append(self.backbone.add_output_edit(module, edit))
        return handles

    def _parts(self, groups) -> tuple[str, list]:
        """Where each distinct theta in use applies among the rows the model runs (examples, or examples x options
        when a backbone expands the batch: its row map): ``("runs", [(theta row, start, end), ...])`` when they come
        in few consecutive runs (examples ordered by theta: slices of the input, no copy), else ``("index",
        [(theta row, indices), ...])``."""
        first, inverse = groups
        rows = self.backbone._row_index
        which = (inverse if rows is None else inverse.index_select(0, rows)).tolist()
        runs, start = [], 0
        for i in range(1, len(which) + 1):
            if i == len(which) or which[i] != which[start]:
                runs.append((which[start], start, i))
                start = i
        if len(runs) <= 2 * first.numel():
            return "runs", [(int(first[u]), a, b) for u, a, b in runs]
        at = torch.tensor(which, device=inverse.device)
        parts = []
        for u in sorted(set(which)):
            parts.append((int(first[u]), (at == u).nonzero().flatten()))
        return "index", parts

    @staticmethod
    def _grouped(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, parts) -> torch.Tensor:
        """The per-example update computed once per distinct theta row over the model's rows that carry it, with
        no per-row copy of A and B (differentiable in A and B: a trained theta's rows are grouped by
        construction, see :meth:`_install_rows`)."""
        kind, items = parts
        if kind == "runs":
            return torch.cat([(x[s:e] @ a[r].t()) @ b[r].t() for r, s, e in items])
        delta = x.new_zeros(*x.shape[:-1], b.shape[-2])
        for r, idx in items:
            delta.index_copy_(0, idx, (x.index_select(0, idx) @ a[r].t()) @ b[r].t())
        return delta
