"""BitFit (Ben Zaken et al. 2021): tune only the bias terms.

Every projection of every block (attention q/k/v/o, feed-forward in/out) and, optionally, every norm gets a
bias vector added to its output. Where the backbone already has that bias (BERT, BART, GPT-2), this is exactly
tuning it; architectures without biases (T5, Llama) get new biases initialised at zero.

theta layout: for each distinct module in canonical site order, ``<site>.bias [out_features]``; fused
projections (GPT-2's ``c_attn``) are one module named ``<attention>.q_k_v``. Norm biases follow as
``<norm>.bias [dim]`` (block norms in block order, then embedding / final norms). Initial theta = 0 (neutral).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import option
from .base import DeltaMethod, MethodConfig, register


@dataclass
class BitFitConfig(MethodConfig):
    norms: bool = option(True, "also tune the biases of layer norms")


@register
class BitFit(DeltaMethod):
    """BitFit: biases of every projection (and norm), added where the architecture has none."""

    name = "bitfit"
    default_lr = 5e-3
    config_class = BitFitConfig
    has_neutral = True

    def bias_sites(self) -> list[tuple[str, object, int]]:
        """(slice name, module, width) per distinct module, canonical order."""
        grouped: dict[int, list] = {}
        order = []
        for site in self.backbone.sites.linear_sites():
            if id(site.module) not in grouped:
                grouped[id(site.module)] = []
                order.append(site.module)
            grouped[id(site.module)].append(site)
        out = []
        for module in order:
            sites = grouped[id(module)]
            if len(sites) == 1:
                name = sites[0].name
            else:
                prefix = sites[0].name.rsplit(".", 1)[0]
                name = prefix + "." + "_".join(s.name.rsplit(".", 1)[1] for s in sites)
            out.append((f"{name}.bias", module, sites[0].module_out_features))
        if self.config.norms:
            out.extend((f"{n.name}.bias", n.module, n.dim) for n in self.backbone.sites.norm_sites())
        return out

    def _entries(self):
        return [(name, (width,)) for name, _, width in self.bias_sites()]

    def _install(self, views, per_example):
        handles = []
        for name, module, _ in self.bias_sites():
            bias = views[name]

            def edit(_x, out, bias=bias):
                b = bias.to(out.dtype)
                if per_example:
                    b = self.backbone.rows(b)
                    b = b.view(b.shape[0], *([1] * (out.dim() - 2)), b.shape[-1])
                return out + b

            handles.append(self.backbone.add_output_edit(module, edit))
        return handles
