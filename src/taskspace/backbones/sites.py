"""Where delta methods attach: an architecture-neutral map of a transformer's blocks.

This module is the only place in taskspace that knows module names of particular architectures. It turns a
Hugging Face model into :class:`Sites`: per transformer block, its self-attention (and cross-attention) with
the q/k/v/o projections, its feed-forward input and output projections and its norms, in a canonical order:
stacks in order (``encoder`` before ``decoder``; decoder-only and encoder-only models have one stack), blocks
by layer index, and inside a block self-attention, cross-attention, feed-forward. Delta methods only ever see
this description, so a new architecture needs one ``_blocks_*`` function here and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

from torch import nn

from ..errors import ConfigError


@dataclass(frozen=True)
class LinearSite:
    """One projection: a Linear-like module and the slice of its output that belongs to this role.

    Fused projections (GPT-2's ``c_attn`` computes q, k and v at once) give several sites on one module with
    different ``out_offset``.
    """

    name: str
    module: nn.Module
    in_features: int
    out_features: int
    out_offset: int = 0
    module_out_features: int = -1

    def __post_init__(self) -> None:
        if self.module_out_features < 0:
            object.__setattr__(self, "module_out_features", self.out_features)

    @property
    def covers_output(self) -> bool:
        return self.out_offset == 0 and self.out_features == self.module_out_features


@dataclass(frozen=True)
class AttentionSite:
    """A multi-head attention module: the module that calls the attention function, and its projections."""

    name: str
    module: nn.Module
    q: LinearSite
    k: LinearSite
    v: LinearSite
    o: LinearSite
    n_heads: int
    n_kv_heads: int
    head_dim: int
    causal: bool

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim


@dataclass(frozen=True)
class NormSite:
    name: str
    module: nn.Module
    dim: int


@dataclass(frozen=True)
class BlockSite:
    """One transformer block (layer) of one stack."""

    stack: str
    index: int
    self_attn: AttentionSite
    cross_attn: AttentionSite | None
    ffn_in: tuple[LinearSite, ...]
    ffn_out: LinearSite
    norms: tuple[NormSite, ...]

    @property
    def name(self) -> str:
        return f"{self.stack}.{self.index}"

    def attentions(self) -> Iterator[tuple[str, AttentionSite]]:
        yield "self_attn", self.self_attn
        if self.cross_attn is not None:
            yield "cross_attn", self.cross_attn


@dataclass(frozen=True)
class Sites:
    """All attachment points of one backbone, in canonical order."""

    model_type: str
    hidden_size: int
    blocks: tuple[BlockSite, ...]
    # Norms outside the blocks (embedding norm, final norms), in module order.
    extra_norms: tuple[NormSite, ...] = field(default=())

    @property
    def stacks(self) -> tuple[str, ...]:
        seen: list[str] = []
        for b in self.blocks:
            if b.stack not in seen:
                seen.append(b.stack)
        return tuple(seen)

    def stack_blocks(self, stack: str) -> tuple[BlockSite, ...]:
        return tuple(b for b in self.blocks if b.stack == stack)

    def linear_sites(self) -> Iterator[LinearSite]:
        """Every projection of every block, in canonical order."""
        for b in self.blocks:
            for _, att in b.attentions():
                yield from (att.q, att.k, att.v, att.o)
            yield from b.ffn_in
            yield b.ffn_out

    def norm_sites(self) -> Iterator[NormSite]:
        for b in self.blocks:
            yield from b.norms
        yield from self.extra_norms


# --------------------------------------------------------------------------------------------------------------
# Per-architecture discovery


def _linear(name: str, module: nn.Module) -> LinearSite:
    return LinearSite(name, module, module.in_features, module.out_features)


def _conv1d_slices(prefix: str, module: nn.Module, roles: tuple[str, ...]) -> list[LinearSite]:
    """Sites for GPT-2's Conv1D (weight [in, out]), split into equal output slices for fused projections."""
    d_in, d_out = module.weight.shape
    width = d_out // len(roles)
    return [
        LinearSite(f"{prefix}.{role}", module, d_in, width, out_offset=i * width, module_out_features=d_out)
        for i, role in enumerate(roles)
    ]


def _norm(name: str, module: nn.Module) -> NormSite:
    return NormSite(name, module, int(module.weight.shape[0]))


def _attention(name, module, q, k, v, o, *, n_heads, n_kv_heads, head_dim, causal) -> AttentionSite:
    return AttentionSite(
        name=name,
        module=module,
        q=_linear(f"{name}.q", q) if isinstance(q, nn.Linear) else q,
        k=_linear(f"{name}.k", k) if isinstance(k, nn.Linear) else k,
        v=_linear(f"{name}.v", v) if isinstance(v, nn.Linear) else v,
        o=_linear(f"{name}.o", o) if isinstance(o, nn.Linear) else o,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=head_dim,
        causal=causal,
    )


def _blocks_t5(model: nn.Module) -> tuple[list[BlockSite], list[NormSite]]:
    cfg = model.config
    blocks: list[BlockSite] = []
    for stack, causal in (("encoder", False), ("decoder", True)):
        for i, block in enumerate(getattr(model, stack).block):
            p = f"{stack}.{i}"
            layers = block.layer

            def att(kind: str, m: nn.Module) -> AttentionSite:
                return _attention(
                    f"{p}.{kind}", m, m.q, m.k, m.v, m.o,
                    n_heads=cfg.num_heads, n_kv_heads=cfg.num_heads, head_dim=cfg.d_kv,
                    causal=causal and kind == "self_attn",
                )

            ff = layers[-1].DenseReluDense
            ffn_in = [_linear(f"{p}.ffn.{n}", getattr(ff, n)) for n in ("wi", "wi_0", "wi_1") if hasattr(ff, n)]
            norms = [_norm(f"{p}.norm.{j}", layer.layer_norm) for j, layer in enumerate(layers)]
            blocks.append(
                BlockSite(
                    stack, i,
                    self_attn=att("self_attn", layers[0].SelfAttention),
                    cross_attn=att("cross_attn", layers[1].EncDecAttention) if stack == "decoder" else None,
                    ffn_in=tuple(ffn_in),
                    ffn_out=_linear(f"{p}.ffn.out", ff.wo),
                    norms=tuple(norms),
                )
            )
    extra = [_norm(f"{s}.final_norm", getattr(model, s).final_layer_norm) for s in ("encoder", "decoder")]
    return blocks, extra


def _blocks_bart(model: nn.Module) -> tuple[list[BlockSite], list[NormSite]]:
    cfg = model.config
    inner = model.model
    blocks: list[BlockSite] = []
    extra: list[NormSite] = []
    for stack, causal, heads in (
        ("encoder", False, cfg.encoder_attention_heads),
        ("decoder", True, cfg.decoder_attention_heads),
    ):
        part = getattr(inner, stack)
        extra.append(_norm(f"{stack}.embedding_norm", part.layernorm_embedding))
        if getattr(part, "layer_norm", None) is not None:  # mBART has a final norm per stack
            extra.append(_norm(f"{stack}.final_norm", part.layer_norm))
        head_dim = cfg.d_model // heads
        for i, layer in enumerate(part.layers):
            p = f"{stack}.{i}"

            def att(kind: str, m: nn.Module) -> AttentionSite:
                return _attention(
                    f"{p}.{kind}", m, m.q_proj, m.k_proj, m.v_proj, m.out_proj,
                    n_heads=heads, n_kv_heads=heads, head_dim=head_dim, causal=causal and kind == "self_attn",
                )

            norms = [_norm(f"{p}.norm.self_attn", layer.self_attn_layer_norm)]
            cross = None
            if stack == "decoder":
                cross = att("cross_attn", layer.encoder_attn)
                norms.append(_norm(f"{p}.norm.cross_attn", layer.encoder_attn_layer_norm))
            norms.append(_norm(f"{p}.norm.ffn", layer.final_layer_norm))
            blocks.append(
                BlockSite(
                    stack, i,
                    self_attn=att("self_attn", layer.self_attn),
                    cross_attn=cross,
                    ffn_in=(_linear(f"{p}.ffn.in", layer.fc1),),
                    ffn_out=_linear(f"{p}.ffn.out", layer.fc2),
                    norms=tuple(norms),
                )
            )
    return blocks, extra


def _blocks_gpt2(model: nn.Module) -> tuple[list[BlockSite], list[NormSite]]:
    cfg = model.config
    heads = cfg.n_head
    blocks: list[BlockSite] = []
    for i, block in enumerate(model.transformer.h):
        p = f"decoder.{i}"
        q, k, v = _conv1d_slices(f"{p}.self_attn", block.attn.c_attn, ("q", "k", "v"))
        (o,) = _conv1d_slices(f"{p}.self_attn", block.attn.c_proj, ("o",))
        attn = AttentionSite(
            f"{p}.self_attn", block.attn, q, k, v, o,
            n_heads=heads, n_kv_heads=heads, head_dim=cfg.n_embd // heads, causal=True,
        )
        (ffn_in,) = _conv1d_slices(f"{p}.ffn", block.mlp.c_fc, ("in",))
        (ffn_out,) = _conv1d_slices(f"{p}.ffn", block.mlp.c_proj, ("out",))
        norms = (_norm(f"{p}.norm.self_attn", block.ln_1), _norm(f"{p}.norm.ffn", block.ln_2))
        blocks.append(BlockSite("decoder", i, attn, None, (ffn_in,), ffn_out, norms))
    return blocks, [_norm("decoder.final_norm", model.transformer.ln_f)]


def _blocks_llama(model: nn.Module) -> tuple[list[BlockSite], list[NormSite]]:
    cfg = model.config
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    blocks: list[BlockSite] = []
    for i, layer in enumerate(model.model.layers):
        p = f"decoder.{i}"
        a = layer.self_attn
        attn = _attention(
            f"{p}.self_attn", a, a.q_proj, a.k_proj, a.v_proj, a.o_proj,
            n_heads=heads, n_kv_heads=kv_heads, head_dim=head_dim, causal=True,
        )
        mlp = layer.mlp
        ffn_in = (_linear(f"{p}.ffn.gate", mlp.gate_proj), _linear(f"{p}.ffn.up", mlp.up_proj))
        norms = (
            _norm(f"{p}.norm.self_attn", layer.input_layernorm),
            _norm(f"{p}.norm.ffn", layer.post_attention_layernorm),
        )
        blocks.append(BlockSite("decoder", i, attn, None, ffn_in, _linear(f"{p}.ffn.out", mlp.down_proj), norms))
    return blocks, [_norm("decoder.final_norm", model.model.norm)]


def _blocks_bert(model: nn.Module) -> tuple[list[BlockSite], list[NormSite]]:
    cfg = model.config
    heads = cfg.num_attention_heads
    # BertModel itself, or a task model that wraps it (BertForMaskedLM.bert, RobertaModel, ...).
    inner = model if hasattr(model, "encoder") else getattr(model, model.base_model_prefix)
    blocks: list[BlockSite] = []
    for i, layer in enumerate(inner.encoder.layer):
        p = f"encoder.{i}"
        s = layer.attention.self
        attn = _attention(
            f"{p}.self_attn", s, s.query, s.key, s.value, layer.attention.output.dense,
            n_heads=heads, n_kv_heads=heads, head_dim=cfg.hidden_size // heads, causal=False,
        )
        norms = (
            _norm(f"{p}.norm.self_attn", layer.attention.output.LayerNorm),
            _norm(f"{p}.norm.ffn", layer.output.LayerNorm),
        )
        blocks.append(
            BlockSite(
                "encoder", i, attn, None,
                (_linear(f"{p}.ffn.in", layer.intermediate.dense),),
                _linear(f"{p}.ffn.out", layer.output.dense),
                norms,
            )
        )
    return blocks, [_norm("encoder.embedding_norm", inner.embeddings.LayerNorm)]


#: Every supported architecture: its backbone family and how its attachment points are found (one table, so the
#: two can never disagree).
ARCHITECTURES: dict[str, tuple[str, Callable[[nn.Module], tuple[list[BlockSite], list[NormSite]]]]] = {
    "t5": ("seq2seq", _blocks_t5),
    "mt5": ("seq2seq", _blocks_t5),
    "bart": ("seq2seq", _blocks_bart),
    "mbart": ("seq2seq", _blocks_bart),
    "gpt2": ("causal", _blocks_gpt2),
    "llama": ("causal", _blocks_llama),
    "mistral": ("causal", _blocks_llama),
    "qwen2": ("causal", _blocks_llama),
    "bert": ("encoder", _blocks_bert),
    "roberta": ("encoder", _blocks_bert),
}

#: Which backbone family each supported architecture belongs to.
FAMILY_OF: dict[str, str] = {model_type: family for model_type, (family, _) in ARCHITECTURES.items()}


def supported_model_types() -> tuple[str, ...]:
    return tuple(sorted(ARCHITECTURES))


def discover_sites(model: nn.Module) -> Sites:
    """Describe ``model``'s attachment points; raises ConfigError for an architecture taskspace does not map."""
    model_type = model.config.model_type
    if model_type not in ARCHITECTURES:
        raise ConfigError(
            f"architecture {model_type!r} is not supported; supported model types: "
            + ", ".join(supported_model_types())
        )
    blocks, extra = ARCHITECTURES[model_type][1](model)
    hidden = int(getattr(model.config, "d_model", None) or model.config.hidden_size)
    return Sites(model_type=model_type, hidden_size=hidden, blocks=tuple(blocks), extra_norms=tuple(extra))
