"""Full fine-tuning as a flat vector: theta is the change of every backbone weight, ``W = W0 + delta``.

theta layout: one slice per parameter of the backbone, named and ordered as ``model.named_parameters()`` (tied
weights once), each with the parameter's shape. Initial theta = 0 (the pre-trained model). Per-example theta is
not supported (it would need one copy of the model per example).

Binding replaces each weight by ``W0 + delta`` once per bind, except embedding tables that are only looked up by
plain ``nn.Embedding`` modules (not tied to an output layer, e.g. BERT's): those add ``delta[ids]`` to the
looked-up rows, which avoids materialising a vocabulary-sized sum on every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from .base import DeltaMethod, MethodConfig, register


@dataclass
class FinetuneConfig(MethodConfig):
    pass


def _lookup_only(holders: list[tuple[nn.Module, str]]) -> bool:
    """Whether a table is only read by plain ``nn.Embedding`` lookups (whose input is the token ids)."""
    return all(
        type(m).forward is nn.Embedding.forward and attr == "weight" and m.max_norm is None for m, attr in holders
    )


@register
class FineTuning(DeltaMethod):
    """Full fine-tuning: the change of every backbone weight."""

    name = "finetune"
    default_lr = 2e-5
    config_class = FinetuneConfig
    supports_per_example = False
    has_neutral = True

    def _entries(self):
        return [(name, tuple(p.shape)) for name, p in self.backbone.base_parameters.items()]

    def _install(self, views, per_example):
        base = self.backbone.base_parameters
        overrides, handles = {}, []
        for name, delta in views.items():
            holders = self.backbone.holders(name)
            if _lookup_only(holders):
                # Every embedding module that shares the table (T5's encoder and decoder) adds the delta rows.
                for module, _ in holders:

                    def edit(ids, out, delta=delta, module=module):
                        return out + F.embedding(ids, delta.to(out.dtype), padding_idx=module.padding_idx)

                    handles.append(self.backbone.add_output_edit(module, edit))
            else:
                overrides[name] = base[name] + delta.to(base[name].dtype)
        if overrides:
            handles.append(self.backbone.override_parameters(overrides))
        return handles
