"""Parameter counts of the papers' settings, from configs alone (meta device, no weights)."""

from __future__ import annotations

import pytest
import torch
from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

from taskspace.backbones import wrap_model
from taskspace.cli import main
from taskspace.deltas import build_method

T5_BASE = dict(vocab_size=32128, d_model=768, d_ff=3072, d_kv=64, num_layers=12, num_heads=12,
               decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
BART_BASE = dict(vocab_size=50265, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                 decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072)


def _meta(model_cls, config):
    with torch.device("meta"):
        model = model_cls(config)
    return wrap_model(model, None, name=config.model_type)


@pytest.mark.parametrize(
    "method,options",
    [("adapter", {"r": 12}), ("lora", {"r": 10, "alpha": 16}), ("prefix", {"n_tokens": 120, "hidden": 24})],
)
def test_udt_budget_on_t5_base(method, options):
    backbone = _meta(T5ForConditionalGeneration, T5Config(**T5_BASE))
    assert backbone.device.type == "meta"
    assert build_method(method, backbone, options).size == 1_105_920


def test_udt_lora_covers_self_and_cross_attention():
    backbone = _meta(T5ForConditionalGeneration, T5Config(**T5_BASE))
    lora = build_method("lora", backbone, {"r": 10})
    sites = {s.name.split(".", 2)[2] for s in lora.target_sites()}
    assert sites == {"self_attn.q", "self_attn.v", "cross_attn.q", "cross_attn.v"}
    assert len(lora.target_sites()) == 12 * 2 + 12 * 4


def test_ipt_prompt_on_bart_base():
    backbone = _meta(BartForConditionalGeneration, BartConfig(**BART_BASE))
    assert build_method("prompt", backbone, {"n_tokens": 100}).size == 76_800
    assert build_method("finetune", backbone).size == 139_420_416  # "139 M" in the IPT paper


def test_params_command_reads_a_config_folder(tmp_path, capsys):
    T5Config(**T5_BASE).save_pretrained(tmp_path)
    assert main(["params", "--backbone", str(tmp_path), "--method", "prefix", "--opt", "n_tokens=120",
                 "--opt", "hidden=24"]) == 0
    assert "D = 1,105,920" in capsys.readouterr().out
