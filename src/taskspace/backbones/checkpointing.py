"""Gradient checkpointing of a backbone's transformer layers, with what was bound in the forward pass put back when
``backward`` recomputes a layer."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from ..errors import ConfigError
from .attention import PREFIX_ATTR


class LayerCheckpointing:
    """Gradient checkpointing for :class:`~taskspace.backbones.base.Backbone` (a mixin: it records and puts back the
    backbone's injections, its parameter overrides, prefixes, output edits and row map)."""

    def _checkpoint_layers(self) -> None:
        """Recompute each transformer layer's activations in the backward pass instead of keeping them.

        transformers checkpoints a layer only in training mode, which would switch the frozen model's dropout on;
        taskspace wraps the layers itself (PyTorch's non-reentrant checkpoint). What is bound when a layer runs
        (parameter overrides, prefixes, output edits, the row map) is gone by the time ``backward`` recomputes
        it, so the recomputation runs with the injections of the forward pass put back."""
        from torch.utils.checkpoint import checkpoint
        from transformers.modeling_layers import GradientCheckpointingLayer

        layers = [m for m in self.model.modules() if isinstance(m, GradientCheckpointingLayer)]
        if not layers:
            raise ConfigError(f"gradient_checkpointing=true: {type(self.model).__name__} has no layers transformers "
                              "can checkpoint")
        for layer in layers:
            forward = layer.forward

            def run(*args, _forward=forward, _layer=layer, **kwargs):
                cached = kwargs.get("past_key_values") is not None or kwargs.get("layer_past") is not None
                if not torch.is_grad_enabled() or cached:
                    return _forward(*args, **kwargs)
                state = self._injections(_layer)
                return checkpoint(_forward, *args, use_reentrant=False, **kwargs,
                                  context_fn=lambda: (contextlib.nullcontext(), self._reinstated(state, _layer)))

            layer.forward = run

    def _injections(self, layer: nn.Module) -> tuple:
        """What is bound now, as far as ``layer`` can see it."""
        return (list(self._overrides), self._suspended, self._row_index,
                {m: getattr(m, PREFIX_ATTR, None) for m in layer.modules()},
                {m: dict(m._forward_hooks) for m in layer.modules()})

    @contextlib.contextmanager
    def _reinstated(self, state: tuple, layer: nn.Module) -> Iterator[None]:
        """Within this block, ``layer`` runs with the injections ``state`` recorded; then the current ones again."""
        now = self._injections(layer)
        self._put_injections(state)
        try:
            yield
        finally:
            self._put_injections(now)

    def _put_injections(self, state: tuple) -> None:
        overrides, self._suspended, self._row_index, prefixes, hooks = state
        self._overrides = list(overrides)
        self._apply_overrides()
        for m, prefix in prefixes.items():
            if prefix is None:
                m.__dict__.pop(PREFIX_ATTR, None)
            else:
                setattr(m, PREFIX_ATTR, prefix)
        for m, kept in hooks.items():
            m._forward_hooks.clear()
            m._forward_hooks.update(kept)
