"""Bottleneck adapters (Houlsby et al. 2019): ``h <- h + f(h W_down) W_up`` on a sub-layer's output.

The adapter acts on the output of a sub-layer's last projection, before dropout, the residual connection and
the norm. Locations: after self-attention, after cross-attention (encoder-decoder models) and after the
feed-forward network. No biases (as in UDT).

theta layout, for every block in canonical order and each chosen location present in it
(``self_attn``, ``cross_attn``, ``ffn``):

    ``<block>.<location>.adapter.down``  [d, r]
    ``<block>.<location>.adapter.up``    [r, d]

Initialisation: W_down kaiming-uniform, W_up = 0, so the initial theta is neutral. UDT uses r = 12 with SiLU
at all three locations; IPT (Adapter) uses r = 16 with swish (= SiLU) after self-attention and the FFN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..backbones.sites import LinearSite
from ..errors import ConfigError
from ..config import option
from .base import DeltaMethod, MethodConfig, kaiming_uniform_, register

ACTIVATIONS = {
    "silu": torch.nn.functional.silu,
    "swish": torch.nn.functional.silu,
    "relu": torch.relu,
    "gelu": torch.nn.functional.gelu,
    "tanh": torch.tanh,
}
LOCATIONS = ("self_attn", "cross_attn", "ffn")


@dataclass
class AdapterConfig(MethodConfig):
    r: int = option(16, "bottleneck dimension")
    activation: str = option("silu", f"non-linearity f, one of {', '.join(ACTIVATIONS)}")
    locations: tuple[str, ...] = option(LOCATIONS, "sub-layers followed by an adapter: self_attn, cross_attn, ffn")


@register
class Adapter(DeltaMethod):
    """Bottleneck adapters h + f(h W_down) W_up after attention / feed-forward sub-layers."""

    name = "adapter"
    default_lr = 5e-4  # docs/budget.md: on SmolLM2, mean dev 55.0 against 42.5 at 2e-3
    config_class = AdapterConfig
    has_neutral = True
    neutral_slices = (".adapter.up",)

    def validate(self) -> None:
        c = self.config
        if c.r < 1:
            raise ConfigError(f"adapter r={c.r}: expected a positive bottleneck dimension")
        if c.activation not in ACTIVATIONS:
            raise ConfigError(f"adapter activation={c.activation!r}: expected one of {list(ACTIVATIONS)}")
        if not c.locations or any(loc not in LOCATIONS for loc in c.locations):
            raise ConfigError(f"adapter locations={list(c.locations)}: expected a subset of {list(LOCATIONS)}")

    def adapter_sites(self) -> list[tuple[str, LinearSite]]:
        """(slice prefix, output projection) for every adapter, in canonical order."""
        out = []
        for block in self.backbone.sites.blocks:
            candidates = [("self_attn", block.self_attn.o), ("ffn", block.ffn_out)]
            if block.cross_attn is not None:
                candidates.insert(1, ("cross_attn", block.cross_attn.o))
            out.extend((f"{block.name}.{loc}.adapter", site) for loc, site in candidates if loc in self.config.locations)
        return out

    def _entries(self):
        r = self.config.r
        out = []
        for prefix, site in self.adapter_sites():
            d = site.out_features
            out += [(f"{prefix}.down", (d, r)), (f"{prefix}.up", (r, d))]
        return out

    def _fill_init(self, theta, generator):
        for prefix, site in self.adapter_sites():
            kaiming_uniform_(self.layout.view(theta, f"{prefix}.down"), site.out_features, generator)

    def _install(self, views, per_example):
        act = ACTIVATIONS[self.config.activation]
        handles = []
        for prefix, site in self.adapter_sites():
            down, up = views[f"{prefix}.down"], views[f"{prefix}.up"]

            def edit(_x, out, down=down, up=up):
                d, u = down.to(out.dtype), up.to(out.dtype)
                if per_example:
                    d, u = self.backbone.rows(d), self.backbone.rows(u)
                return out + act(out @ d) @ u

            handles.append(self.backbone.add_output_edit(site.module, edit))
        return handles
