"""Small backbones for tests: tiny randomly initialised T5 / BART / GPT-2 built from configs with the real
tokenizers in ../shared/tokenizers, the real 260K-parameter Llama, and the real all-MiniLM-L6-v2."""

from __future__ import annotations

import functools

import torch

from taskspace.backbones import Backbone, load_backbone, wrap_model

FAMILY_BACKBONES = ("t5", "bart", "gpt2", "llama", "minilm")

#: Small options of every method, for tests on the tiny backbones.
SMALL = {
    "prompt": {"n_tokens": 3},
    "prefix": {"n_tokens": 3, "hidden": 8},
    "lora": {"r": 2},
    "adapter": {"r": 4},
    "bitfit": {},
    "finetune": {},
}


@functools.lru_cache(maxsize=None)
def _tokenizer(kind: str, root: str):
    from transformers import AutoTokenizer, BartTokenizer, GPT2Tokenizer, T5Tokenizer

    if kind == "t5":
        return T5Tokenizer.from_pretrained(f"{root}/tokenizers/t5")
    if kind == "bart":
        return BartTokenizer.from_pretrained(f"{root}/tokenizers/bart")
    if kind == "gpt2":
        return GPT2Tokenizer.from_pretrained(f"{root}/tokenizers/gpt2")
    return AutoTokenizer.from_pretrained(f"{root}/models/stories260K")


def tiny_model(kind: str, root: str, seed: int = 0):
    """A freshly initialised tiny model of architecture ``kind`` and its real tokenizer.

    BART and GPT-2 are initialised with a larger standard deviation than their defaults (0.02): at that scale a
    32-dimensional random model's output hardly depends on its input, and input-side deltas could not move it.
    """
    from transformers import BartConfig, BartForConditionalGeneration, GPT2Config, GPT2LMHeadModel, T5Config
    from transformers import T5ForConditionalGeneration

    tok = _tokenizer(kind, root)
    torch.manual_seed(seed)
    if kind == "t5":
        cfg = T5Config(
            vocab_size=len(tok), d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=8,
            dropout_rate=0.0, decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        model = T5ForConditionalGeneration(cfg)
    elif kind == "bart":
        cfg = BartConfig(
            vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=600,
            dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.eos_token_id,
            forced_bos_token_id=None, forced_eos_token_id=None, init_std=0.1,
        )
        model = BartForConditionalGeneration(cfg)
    elif kind == "gpt2":
        cfg = GPT2Config(
            vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=600, resid_pdrop=0.0,
            embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.1, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
        )
        model = GPT2LMHeadModel(cfg)
    else:
        raise ValueError(kind)
    model.config._attn_implementation = "sdpa"
    return model, tok


def tiny_backbone(kind: str, root: str, seed: int = 0, **options) -> Backbone:
    if kind == "llama":
        return load_backbone(f"{root}/models/stories260K", **options)
    if kind == "minilm":
        return load_backbone("minilm", **options)
    model, tok = tiny_model(kind, root, seed)
    return wrap_model(model, tok, name=f"tiny-{kind}", **options)
