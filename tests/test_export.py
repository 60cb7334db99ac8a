"""PEFT export: a run's LoRA or prompt theta, loaded by peft onto a fresh copy of the base model, computes the same
logits as taskspace; the methods peft cannot express are refused with the reason, and nothing is written."""

from __future__ import annotations

import json

import pytest
import torch

from taskspace.cli import main
from taskspace.deltas import build_method
from taskspace.export import export_peft
from taskspace.predict import Predictor
from tiny import tiny_backbone


@pytest.fixture(scope="module")
def llama_dir(shared_dir):
    return f"{shared_dir}/models/stories260K"


def _run(tmp_path, data_dir, llama_dir, method, *opts):
    assert main(["tune", "--task", "glue-sst2", "--method", method, "--backbone", llama_dir, "--data-dir",
                 str(data_dir), "--out", str(tmp_path), "--run-name", method, "--steps", "3", "--eval-every", "3",
                 "--lr", "0.05", "--max-test-examples", "4", "--no-progress", *opts]) == 0
    return tmp_path / method


def _peft_model(llama_dir, folder):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(llama_dir, local_files_only=True)
    return PeftModel.from_pretrained(base, str(folder)).eval()


def _ids(backbone):
    tok = backbone.tokenizer
    batch = tok(["[glue-sst2] a gripping, funny film", "[glue-sst2] dull"], return_tensors="pt", padding=True)
    return batch["input_ids"], batch["attention_mask"]


def test_lora_exports_exactly(tmp_path, data_dir, llama_dir):
    run = _run(tmp_path, data_dir, llama_dir, "lora", "--opt", "r=2", "--opt", "targets=q,v,o")
    p = Predictor.load(run)
    assert p.method.is_neutral(p.theta) is False  # B moved: the export carries a real update
    out = export_peft(run, tmp_path / "peft")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 2 and config["task_type"] == "CAUSAL_LM"
    ids, mask = _ids(p.backbone)
    with torch.no_grad(), p.method.bind(p.theta):
        ours = p.backbone.model(input_ids=ids, attention_mask=mask).logits
    with torch.no_grad():
        plain = p.backbone.model(input_ids=ids, attention_mask=mask).logits
        theirs = _peft_model(llama_dir, out)(input_ids=ids, attention_mask=mask).logits
    assert not torch.allclose(plain, ours)  # the update changes the model, so the comparison means something
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)


def test_prompt_exports_exactly(tmp_path, data_dir, llama_dir):
    run = _run(tmp_path, data_dir, llama_dir, "prompt", "--opt", "n_tokens=3")
    p = Predictor.load(run)
    out = export_peft(run, tmp_path / "peft")
    assert json.loads((out / "adapter_config.json").read_text())["num_virtual_tokens"] == 3
    ids, mask = _ids(p.backbone)
    with torch.no_grad(), p.method.bind(p.theta):
        embeds, full_mask, n = p.backbone._embed_inputs(ids, mask)
        ours = p.backbone.model(inputs_embeds=embeds, attention_mask=full_mask).logits
    assert n == 3
    with torch.no_grad():
        theirs = _peft_model(llama_dir, out)(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(theirs[:, -ids.shape[1]:], ours[:, -ids.shape[1]:], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind,method,options,message", [
    ("gpt2", "lora", {"r": 2}, "part of a fused projection"),
    ("llama", "prefix", {"n_tokens": 2, "hidden": 4}, "carry no positions"),
    ("llama", "adapter", {"r": 2}, "adapter cannot be exported"),
    ("t5", "prompt", {"n_tokens": 2}, "seq2seq backbone is not exported yet"),
])
def test_what_peft_cannot_express_is_refused(kind, method, options, message, shared_dir, tmp_path):
    from taskspace.errors import ConfigError

    backbone = tiny_backbone(kind, str(shared_dir))
    m = build_method(method, backbone, options)
    p = Predictor(backbone, m, m.init(torch.Generator().manual_seed(0)), "glue-sst2")
    with pytest.raises(ConfigError, match=message):
        export_peft(None, tmp_path / "out", predictor=p)
    assert not (tmp_path / "out").exists()


def test_the_export_command_and_a_subspace_run(tmp_path, data_dir, llama_dir, capsys):
    """A subspace-tune run exports its decoded theta; a bad run folder is one line."""
    assert main(["fit-subspace", "--recipe", "random-ae", "--method", "lora", "--opt", "lora.r=2", "--d", "3",
                 "--hidden", "4", "--backbone", llama_dir, "--out", str(tmp_path / "space")]) == 0
    assert main(["subspace-tune", "--subspace", str(tmp_path / "space"), "--task", "glue-sst2", "--method", "lora",
                 "--data-dir", str(data_dir), "--out", str(tmp_path / "ist"), "--steps", "2", "--eval-every", "2",
                 "--max-test-examples", "4", "--no-progress"]) == 0
    assert main(["export", str(tmp_path / "ist"), "--out", str(tmp_path / "peft")]) == 0
    p = Predictor.load(tmp_path / "ist")
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "peft" / "adapter_model.safetensors"))
    site = p.method.target_sites()[0]
    key = next(k for k in weights if k.endswith("lora_B.weight"))
    assert weights[key].shape == (site.out_features, 2)
    capsys.readouterr()
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "expected a finished run directory" in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.mark.parametrize("kind", ["t5", "bart", "llama"])
def test_lora_exports_exactly_on_every_family_with_linear_projections(kind, shared_dir, tmp_path):
    """A random LoRA theta (B nonzero) on tiny T5, BART and Llama: peft on a fresh copy of the same model agrees."""
    from peft import PeftModel

    from tiny import tiny_model

    backbone = tiny_backbone(kind, str(shared_dir))
    method = build_method("lora", backbone, {"r": 2, "targets": ("q", "v", "o")})
    theta = torch.randn(method.size, generator=torch.Generator().manual_seed(1)) * 0.1
    export_peft(None, tmp_path / "peft", predictor=Predictor(backbone, method, theta, "glue-sst2"))
    if kind == "llama":
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(f"{shared_dir}/models/stories260K", local_files_only=True)
    else:
        base, _ = tiny_model(kind, str(shared_dir))
    peft_model = PeftModel.from_pretrained(base, str(tmp_path / "peft")).eval()
    ids, mask = _ids(backbone)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if backbone.family == "seq2seq":
        inputs["decoder_input_ids"] = ids[:, :3]
    with torch.no_grad(), method.bind(theta):
        ours = backbone.model(**inputs).logits
    with torch.no_grad():
        theirs = peft_model(**inputs).logits
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)
