"""Prefix injection through transformers' attention interface.

Every supported architecture computes attention through ``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]``
(transformers 5). taskspace registers one function, ``"taskspace"``, that prepends the key/value prefix of the
module being run (if a prefix is bound to it) and then calls PyTorch's scaled-dot-product attention exactly as
transformers' own ``"sdpa"`` implementation does. With no prefix bound the call is forwarded unchanged, so the
backbone's outputs are bit-identical to the ``"sdpa"`` model.

Prefix positions carry no position information: they are prepended after rotary embeddings are applied (Llama),
and T5's relative position bias for them is zero. They are visible to every query (also under a causal mask),
and never masked as padding.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

ATTN_IMPLEMENTATION = "taskspace"

#: Attribute set on an attention module while a prefix is bound to it.
PREFIX_ATTR = "_taskspace_prefix"


class PrefixProvider(Protocol):
    def key_values(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Prefix keys and values ``[B or 1, kv_heads, m, head_dim]`` for the current call, or None."""


def _extend_mask(
    mask: torch.Tensor | None, m: int, q_len: int, k_len: int, causal: bool, device: torch.device
) -> torch.Tensor | None:
    """The attention mask for ``m`` prefix keys prepended to ``k_len`` keys: prefix columns always visible."""
    if mask is None:
        if not (causal and q_len > 1):
            return None
        # sdpa would have used is_causal=True; build that mask explicitly, aligned to the last query.
        tril = torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)
        return F.pad(tril, (m, 0), value=True)[None, None]
    if mask.dtype == torch.bool:
        return F.pad(mask, (m, 0), value=True)
    return F.pad(mask, (m, 0), value=0.0)


def taskspace_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs,
):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    provider: PrefixProvider | None = getattr(module, PREFIX_ATTR, None)
    kv = None if provider is None else provider.key_values(query.shape[0])
    if kv is not None:
        pk, pv = kv
        batch = query.shape[0]
        m = pk.shape[-2]
        causal = kwargs.get("is_causal")
        if causal is None:
            causal = getattr(module, "is_causal", False)
        attention_mask = _extend_mask(attention_mask, m, query.shape[2], key.shape[2], bool(causal), query.device)
        key = torch.cat([pk.expand(batch, -1, -1, -1).to(key.dtype), key], dim=2)
        value = torch.cat([pv.expand(batch, -1, -1, -1).to(value.dtype), value], dim=2)
        bias = kwargs.get("position_bias")
        if bias is not None:
            kwargs["position_bias"] = F.pad(bias, (m, 0), value=0.0)
        if attention_mask is not None:
            kwargs["is_causal"] = False
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


_registered = False


def register() -> None:
    """Register the ``"taskspace"`` attention and mask functions with transformers (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_IMPLEMENTATION, taskspace_attention)
    # Masks are built exactly as for "sdpa", so that without a prefix nothing differs from the sdpa model.
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
    _registered = True


def use_taskspace_attention(model: nn.Module) -> None:
    """Route every attention call of ``model`` through :func:`taskspace_attention`.

    Sub-models (T5's encoder and decoder stacks) hold copies of the config, so each copy is switched.
    """
    register()
    configs = {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}
    for cfg in configs.values():
        cfg._attn_implementation = ATTN_IMPLEMENTATION
