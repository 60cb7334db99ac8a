"""Prefix injection through transformers' attention interface, around the attention implementation chosen.

Every supported architecture computes attention through ``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]``
(transformers 5). For the implementation a backbone was loaded with (``sdpa``, the default; ``eager``;
``flex_attention``), taskspace registers a wrapper, ``"taskspace-<implementation>"``, and switches the model to it
with transformers' public ``set_attn_implementation``. The wrapper prepends the key/value prefix of the module being
run (if a prefix is bound to it), extends the mask in that implementation's own format, and calls the wrapped
implementation. With no prefix bound the call is forwarded unchanged, so the backbone's outputs are bit-identical
to the model loaded with that implementation. Flash attention (``flash_attention_2/3/4``) is left unwrapped: its
masks are sequence lengths, not matrices, so a prefix cannot be added there and prefix tuning is refused on it;
every other method runs on it unchanged.

Prefix positions carry no position information: they are prepended after rotary embeddings are applied (Llama),
and T5's relative position bias for them is zero. They are visible to every query (also under a causal mask),
and never masked as padding.
"""

from __future__ import annotations

import sys
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

#: Prefix of the registered wrappers' names: ``taskspace-sdpa``, ``taskspace-eager``, ``taskspace-flex_attention``.
ATTN_PREFIX = "taskspace-"

#: The implementations a prefix can be added to (their masks are matrices or flex block masks).
WRAPPABLE = ("sdpa", "eager", "flex_attention")

#: Attribute set on an attention module while a prefix is bound to it.
PREFIX_ATTR = "_taskspace_prefix"


class PrefixProvider(Protocol):
    def key_values(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Prefix keys and values ``[B or 1, kv_heads, m, head_dim]`` for the current call, or None."""


def _extend_mask(
    mask: torch.Tensor | None, m: int, q_len: int, k_len: int, causal: bool, device: torch.device
) -> torch.Tensor | None:
    """A matrix mask (sdpa, eager) for ``m`` prefix keys prepended to ``k_len`` keys: prefix columns visible.

    ``causal``: a missing mask stands for a causal one (sdpa's ``is_causal``), which is then built explicitly."""
    if mask is None:
        if not (causal and q_len > 1):
            return None
        tril = torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)
        return F.pad(tril, (m, 0), value=True)[None, None]
    if mask.dtype == torch.bool:
        return F.pad(mask, (m, 0), value=True)
    return F.pad(mask, (m, 0), value=0.0)


_block_masks: dict[str, tuple] = {}


def _extend_block_mask(mask, m: int, q_len: int, k_len: int, causal: bool, device: torch.device):
    """A flex-attention block mask for ``m`` prefix keys prepended to ``k_len`` keys: prefix columns visible.

    Every layer of one forward pass receives the same mask object; the extended one is built once for it."""
    from torch.nn.attention.flex_attention import create_block_mask

    if mask is None and not (causal and q_len > 1):
        return None
    key = (id(mask), m, q_len, k_len, causal)
    hit = _block_masks.get("last")
    if hit is not None and hit[0] is mask and hit[1] == key:
        return hit[2]
    offset = k_len - q_len
    if mask is None:
        def inner(b, h, q_idx, kv_idx):
            return kv_idx <= q_idx + offset
        batch = None
    else:
        inner, batch = mask.mask_mod, mask.shape[0]

    def with_prefix(b, h, q_idx, kv_idx):
        return (kv_idx < m) | inner(b, h, q_idx, (kv_idx - m).clamp(min=0))

    extended = create_block_mask(with_prefix, batch, None, q_len, k_len + m, device=device)
    _block_masks["last"] = (mask, key, extended)
    return extended


def _inner_function(module: nn.Module, inner: str) -> Callable:
    """The attention function of implementation ``inner`` for ``module`` (eager is defined per architecture)."""
    if inner == "eager":
        fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
        if fn is None:
            raise ConfigError(f"{type(module).__name__} has no eager_attention_forward in its module: load the "
                              "backbone with attn_implementation=sdpa")
        return fn
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return ALL_ATTENTION_FUNCTIONS[inner]


def wrap_attention(inner: str) -> Callable:
    """The attention function ``taskspace-<inner>``: the bound prefix (if any), then implementation ``inner``."""

    def attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask, **kwargs):
        provider: PrefixProvider | None = getattr(module, PREFIX_ATTR, None)
        kv = None if provider is None else provider.key_values(query.shape[0])
        if kv is not None:
            pk, pv = kv
            batch, m, q_len, k_len = query.shape[0], pk.shape[-2], query.shape[2], key.shape[2]
            causal = kwargs.get("is_causal")
            if causal is None:
                causal = getattr(module, "is_causal", False)
            if inner == "flex_attention":
                attention_mask = _extend_block_mask(attention_mask, m, q_len, k_len, bool(causal), query.device)
            else:
                # eager builds every mask it needs; only sdpa leaves a causal mask implicit (None)
                attention_mask = _extend_mask(attention_mask, m, q_len, k_len, bool(causal) and inner == "sdpa",
                                              query.device)
            key = torch.cat([pk.expand(batch, -1, -1, -1).to(key.dtype), key], dim=2)
            value = torch.cat([pv.expand(batch, -1, -1, -1).to(value.dtype), value], dim=2)
            bias = kwargs.get("position_bias")
            if bias is not None:
                kwargs["position_bias"] = F.pad(bias, (m, 0), value=0.0)
            if inner == "sdpa" and attention_mask is not None:
                kwargs["is_causal"] = False
        return _inner_function(module, inner)(module, query, key, value, attention_mask, **kwargs)

    attention.__name__ = f"taskspace_{inner}_attention"
    return attention


_registered: set[str] = set()


def register(inner: str = "sdpa") -> str:
    """Register ``taskspace-<inner>`` (attention and mask functions) with transformers (idempotent); its name."""
    name = ATTN_PREFIX + inner
    if inner not in _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

        AttentionInterface.register(name, wrap_attention(inner))
        # Masks are built exactly as for ``inner``, so that without a prefix nothing differs from that model.
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[inner])
        _registered.add(inner)
    return name


def chosen_implementation(model: nn.Module) -> str:
    """The attention implementation ``model`` was loaded with (the wrapped one, for a model taskspace routes)."""
    impl = model.config._attn_implementation or "sdpa"
    return impl.removeprefix(ATTN_PREFIX)


def use_taskspace_attention(model: nn.Module) -> str:
    """Route every attention call of ``model`` through the wrapper of the implementation it was loaded with, via
    ``set_attn_implementation``; returns that implementation. Implementations without a wrapper (flash) are left
    as they are.

    Sub-models holding copies of the config (T5's encoder and decoder stacks) are switched too.
    """
    inner = chosen_implementation(model)
    if inner not in WRAPPABLE:
        return inner
    name = register(inner)
    if model.config._attn_implementation != name:
        model.set_attn_implementation(name)
    for cfg in {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}.values():
        cfg._attn_implementation = name
    return inner


def restore_attention(model: nn.Module) -> None:
    """Switch a (copied) model back to the implementation it was loaded with, e.g. before saving it."""
    inner = chosen_implementation(model)
    for cfg in {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}.values():
        cfg._attn_implementation = inner
