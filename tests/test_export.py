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
    texts = ["[glue-sst2] a gripping, funny film", "[glue-sst2] dull"]
    if tok.pad_token is None:  # GPT-2's tokenizer cannot pad: one row
        texts = texts[:1]
    batch = tok(texts, return_tensors="pt", padding=len(texts) > 1)
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
    ("llama", "prefix", {"n_tokens": 2, "hidden": 4}, "carry no positions"),
    ("llama", "bitfit", {}, r"BitFit tuned the bias of .*RMSNorm.*norms=false"),
    ("llama", "finetune", {}, "a model, not an adapter: export it with --format merged"),
    ("llama", "adapter", {"r": 2}, "adapter cannot be exported"),
    ("t5", "prompt", {"n_tokens": 2}, "seq2seq backbone is not exported yet"),
])
def test_what_peft_cannot_express_is_refused(kind, method, options, message, shared_dir, tmp_path):
    from taskspace.errors import ConfigError

    backbone = tiny_backbone(kind, str(shared_dir))
    m = build_method(method, backbone, options)
    theta = m.init(torch.Generator().manual_seed(0)) + 0.01  # every slice moved (BitFit's norms included)
    p = Predictor(backbone, m, theta, "glue-sst2")
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


@pytest.mark.parametrize("kind,method_name,options", [
    ("t5", "lora", {"r": 2, "targets": ("q", "v", "o")}),
    ("bart", "lora", {"r": 2, "targets": ("q", "v", "o")}),
    ("llama", "lora", {"r": 2, "targets": ("q", "v", "o")}),
    # GPT-2's fused c_attn (q, k, v side by side): one LoRA of rank 2r with a block-structured B
    ("gpt2", "lora", {"r": 2, "targets": ("q", "v", "o", "ffn_in")}),
    ("gpt2", "lora", {"r": 2, "targets": ("k",)}),
    # BitFit as peft's BEFT: biases on every linear layer, also where Llama and T5 have none
    ("llama", "bitfit", {"norms": False}),
    ("t5", "bitfit", {"norms": False}),
    ("bart", "bitfit", {"norms": False}),
    # the encoder family, on the real all-MiniLM-L6-v2
    ("minilm", "lora", {"r": 2, "targets": ("q", "v", "ffn_out")}),
    ("minilm", "bitfit", {"norms": False}),
])
def test_exports_exactly_on_every_family(kind, method_name, options, shared_dir, tmp_path):
    """A random theta on tiny models of each family: peft on a fresh copy of the same model agrees."""
    from peft import PeftModel

    from tiny import tiny_model

    backbone = tiny_backbone(kind, str(shared_dir))
    method = build_method(method_name, backbone, options)
    theta = torch.randn(method.size, generator=torch.Generator().manual_seed(1)) * 0.1
    export_peft(None, tmp_path / "peft", predictor=Predictor(backbone, method, theta, "glue-sst2"))
    if kind == "llama":
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(f"{shared_dir}/models/stories260K", local_files_only=True)
    elif kind == "minilm":
        from transformers import AutoModel

        from taskspace.backbones import _minilm_folder

        base = AutoModel.from_pretrained(str(_minilm_folder()), local_files_only=True)
    else:
        base, _ = tiny_model(kind, str(shared_dir))
    peft_model = PeftModel.from_pretrained(base, str(tmp_path / "peft")).eval()
    ids, mask = _ids(backbone)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if backbone.family == "seq2seq":
        inputs["decoder_input_ids"] = ids[:, :3]
    def outputs(out):
        return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state

    with torch.no_grad(), method.bind(theta):
        ours = outputs(backbone.model(**inputs))
    with torch.no_grad():
        plain = outputs(backbone.model(**inputs))
        theirs = outputs(peft_model(**inputs))
    assert not torch.allclose(plain, ours, atol=1e-4)  # the delta changes the model
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Merged models


def _reloaded_outputs(folder, backbone, inputs):
    import transformers

    model = getattr(transformers, type(backbone).auto_class).from_pretrained(str(folder), local_files_only=True).eval()
    with torch.no_grad():
        out = model(**inputs)
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


@pytest.mark.parametrize("kind,method_name,options", [
    ("llama", "lora", {"r": 2, "targets": ("q", "k", "v", "o", "ffn_in", "ffn_out")}),
    ("gpt2", "lora", {"r": 2, "targets": ("q", "v", "ffn_out")}),
    ("t5", "finetune", {}),
    ("gpt2", "finetune", {}),
    ("bart", "bitfit", {}),  # native biases everywhere, layer norms included
    ("llama", "bitfit", {"norms": False}),  # no biases: the saved config switches them on
    ("minilm", "bitfit", {}),  # the encoder family: BERT's biases, layer norms included
])
def test_merged_models_compute_what_the_run_computes(kind, method_name, options, shared_dir, tmp_path):
    from taskspace.export import export_merged

    backbone = tiny_backbone(kind, str(shared_dir))
    method = build_method(method_name, backbone, options)
    theta = torch.randn(method.size, generator=torch.Generator().manual_seed(2)) * 0.05
    out = export_merged(None, tmp_path / "merged", predictor=Predictor(backbone, method, theta, "glue-sst2"))
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    ids, mask = _ids(backbone)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if backbone.family == "seq2seq":
        inputs["decoder_input_ids"] = ids[:, :3]
    def outputs(o):
        return o.logits if getattr(o, "logits", None) is not None else o.last_hidden_state

    with torch.no_grad(), method.bind(theta):
        ours = outputs(backbone.model(**inputs))
    with torch.no_grad():
        plain = outputs(backbone.model(**inputs))
    theirs = _reloaded_outputs(out, backbone, inputs)
    assert not torch.allclose(plain, ours, atol=1e-4)
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind,method_name,options,message", [
    ("llama", "prompt", {"n_tokens": 2}, "prepends virtual tokens"),
    ("llama", "prefix", {"n_tokens": 2, "hidden": 4}, "adds keys and values"),
    ("llama", "adapter", {"r": 2}, "architecture does not have"),
    ("llama", "bitfit", {}, r"bias of .*norm.*no bias parameter.*norms=false"),
    ("t5", "bitfit", {"norms": False}, "config cannot declare them"),
])
def test_what_cannot_be_merged_is_refused(kind, method_name, options, message, shared_dir, tmp_path):
    from taskspace.errors import ConfigError
    from taskspace.export import export_merged

    backbone = tiny_backbone(kind, str(shared_dir))
    m = build_method(method_name, backbone, options)
    p = Predictor(backbone, m, m.init(torch.Generator().manual_seed(0)) + 0.01, "glue-sst2")
    with pytest.raises(ConfigError, match=message):
        export_merged(None, tmp_path / "out", predictor=p)
    assert not (tmp_path / "out").exists()


def test_merged_export_command(tmp_path, data_dir, llama_dir, capsys):
    import os

    run = _run(tmp_path, data_dir, llama_dir, "lora", "--opt", "r=2")
    umask = os.umask(0o022)
    try:
        assert main(["export", str(run), "--format", "merged", "--out", str(tmp_path / "merged")]) == 0
    finally:
        os.umask(umask)
    assert "merged model written" in capsys.readouterr().out
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "merged").iterdir()}
    assert "model.safetensors" in modes and set(modes.values()) == {0o644}, modes  # as every file taskspace writes
    assert main(["export", str(run), "--format", "merged", "--out", str(tmp_path / "merged")]) == 2
    assert "not empty" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# PEFT in


def _peft_lora(llama_dir, folder, **config):
    """A LoRA made by peft itself (B moved off zero, as training would), saved as peft saves it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(llama_dir, local_files_only=True)
    model = get_peft_model(base, LoraConfig(**config))
    torch.manual_seed(3)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)
    model.save_pretrained(str(folder))
    return model.eval()


def test_a_peft_lora_imports_exactly(tmp_path, llama_dir):
    from taskspace.backbones import load_backbone
    from taskspace.export import import_peft

    # some layers only: the other layers' modules of the targeted roles get A = B = 0
    peft_model = _peft_lora(llama_dir, tmp_path / "adapter", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                            layers_to_transform=[0])
    backbone = load_backbone(llama_dir)
    method, theta, _ = import_peft(tmp_path / "adapter", backbone)
    assert method.config.targets == ("q", "v") and method.config.r == 4 and method.scale == 2.0
    ids, mask = _ids(backbone)
    with torch.no_grad(), method.bind(theta):
        ours = backbone.model(input_ids=ids, attention_mask=mask).logits
    with torch.no_grad():
        theirs = peft_model(input_ids=ids, attention_mask=mask).logits
        plain = backbone.model(input_ids=ids, attention_mask=mask).logits
    assert not torch.allclose(plain, theirs)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_prompt_and_lora_round_trip_through_peft(tmp_path, shared_dir):
    from taskspace.export import import_peft

    backbone = tiny_backbone("llama", str(shared_dir))
    for name, options in (("prompt", {"n_tokens": 3}), ("lora", {"r": 2, "targets": ("k", "ffn_out")})):
        method = build_method(name, backbone, options)
        theta = torch.randn(method.size, generator=torch.Generator().manual_seed(4))
        export_peft(None, tmp_path / name, predictor=Predictor(backbone, method, theta, "t"))
        back, theta_back, _ = import_peft(tmp_path / name, backbone)
        assert back.describe() == method.describe()
        assert torch.equal(theta_back, theta)


@pytest.mark.parametrize("edit,message", [
    (lambda c, d: c.update(use_rslora=True), "rsLoRA"),
    (lambda c, d: c.update(use_dora=True), "DoRA"),
    (lambda c, d: c.update(rank_pattern={"q_proj": 8}), "rank_pattern is set"),
    (lambda c, d: c.update(peft_type="IA3"), "peft_type 'IA3': taskspace imports LORA and PROMPT_TUNING"),
    (lambda c, d: (d / "adapter_model.safetensors").rename(d / "adapter_model.bin"), "a pickle"),
])
def test_what_cannot_be_imported_is_refused(tmp_path, llama_dir, edit, message):
    from taskspace.backbones import load_backbone
    from taskspace.errors import DataError
    from taskspace.export import import_peft

    _peft_lora(llama_dir, tmp_path / "a", r=2, target_modules=["q_proj"])
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    edit(config, tmp_path / "a")
    (tmp_path / "a" / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match=message):
        import_peft(tmp_path / "a", load_backbone(llama_dir))


def test_a_lora_on_a_module_without_a_site_is_refused(tmp_path, llama_dir):
    from safetensors.torch import save_file

    from taskspace.backbones import load_backbone
    from taskspace.errors import DataError
    from taskspace.export import import_peft

    _peft_lora(llama_dir, tmp_path / "a", r=2, target_modules=["q_proj"])
    weights = {k.replace("self_attn.q_proj", "mlp.act_fn"): v for k, v in _load(tmp_path / "a").items()}
    save_file(weights, str(tmp_path / "a" / "adapter_model.safetensors"))
    with pytest.raises(DataError, match="module 'model.layers.0.mlp.act_fn': a SiLU.* not a projection"):
        import_peft(tmp_path / "a", load_backbone(llama_dir))


def _load(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_lm_head_lora_is_refused(tmp_path, llama_dir):
    from taskspace.backbones import load_backbone
    from taskspace.errors import DataError
    from taskspace.export import import_peft

    _peft_lora(llama_dir, tmp_path / "a", r=2, target_modules=["q_proj", "lm_head"])
    # peft saves the tied output layer's weights with it: refused as a tensor no LoRA slice holds
    with pytest.raises(DataError, match="'base_model.model.lm_head.* is not a LoRA A or B weight"):
        import_peft(tmp_path / "a", load_backbone(llama_dir))


def test_import_peft_command_writes_a_run_that_evaluates_and_predicts(tmp_path, data_dir, llama_dir, capsys):
    _peft_lora(llama_dir, tmp_path / "adapter", r=2, target_modules=["q_proj", "o_proj"])
    assert main(["import-peft", str(tmp_path / "adapter"), "--task", "glue-sst2", "--backbone", llama_dir,
                 "--decode", "rank", "--data-dir", str(data_dir), "--max-test-examples", "4",
                 "--out", str(tmp_path / "runs"), "--run-name", "imp"]) == 0
    run = tmp_path / "runs" / "imp"
    scores = json.loads((run / "scores.json").read_text())
    assert scores["steps"] == 0 and scores["imported_from"].endswith("adapter") and scores["n_test"] == 4
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    assert "identical" in capsys.readouterr().out
    assert main(["export", str(run), "--out", str(tmp_path / "again")]) == 0  # and back out
    assert main(["import-peft", str(tmp_path / "nowhere"), "--task", "glue-sst2", "--data-dir", str(data_dir)]) == 2
    assert "expected a PEFT adapter folder" in capsys.readouterr().err


@pytest.mark.parametrize("method_name,options", [("lora", {"r": 2, "targets": ("q", "v", "ffn_out")}),
                                                 ("prompt", {"n_tokens": 2}), ("bitfit", {"norms": False})])
def test_peft_computes_what_taskspace_computes_on_smollm2(method_name, options, smol, smollm2_cache, tmp_path):
    """The default backbone itself: peft on the converted SmolLM2 folder agrees with taskspace."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    method = build_method(method_name, smol, options)
    theta = torch.randn(method.size, generator=torch.Generator().manual_seed(5)) * 0.02
    export_peft(None, tmp_path / "peft", predictor=Predictor(smol, method, theta, "glue-sst2"))
    base = AutoModelForCausalLM.from_pretrained(str(smollm2_cache[1]), local_files_only=True, dtype=smol.dtype)
    peft_model = PeftModel.from_pretrained(base, str(tmp_path / "peft")).eval()
    ids, mask = _ids(smol)
    n = ids.shape[1]
    with torch.no_grad(), method.bind(theta):
        if method_name == "prompt":
            embeds, full_mask, _ = smol._embed_inputs(ids, mask)
            ours = smol.model(inputs_embeds=embeds, attention_mask=full_mask).logits[:, -n:]
        else:
            ours = smol.model(input_ids=ids, attention_mask=mask).logits
    with torch.no_grad():
        theirs = peft_model(input_ids=ids, attention_mask=mask).logits[:, -n:]
    tol = 1e-4 if smol.dtype == torch.float32 else 3e-2
    torch.testing.assert_close(theirs.float(), ours.float(), rtol=tol, atol=tol * 10)


def test_a_peft_lora_joins_a_bank(tmp_path, data_dir, llama_dir, capsys):
    """An adapter of the bank's form becomes one of its entries (the bank's settings, its common anchor): the bank
    command finds it finished, and the bank stacks it with the tuned ones."""
    import shutil

    from taskspace.backbones import load_backbone
    from taskspace.subspace import Bank

    bank = tmp_path / "bank"
    args = ["bank", "--out", str(bank), "--methods", "lora", "--opt", "lora.r=2", "--tasks", "glue-sst2",
            "superglue-copa", "--backbone", llama_dir, "--decode", "rank", "--data-dir", str(data_dir),
            "--steps", "2", "--eval-every", "2", "--max-test-examples", "4", "--no-progress"]
    _peft_lora(llama_dir, tmp_path / "adapter", r=2, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    imported = ["import-peft", str(tmp_path / "adapter"), "--task", "superglue-copa", "--bank", str(bank),
                "--decode", "rank"]
    capsys.readouterr()
    assert main(imported) == 2 and "bank.json" in capsys.readouterr().err  # no bank there yet
    assert main(args) == 0
    copa = bank / "superglue-copa" / "lora" / "s0"
    shutil.rmtree(copa)  # as if it had never been tuned: the adapter takes its place
    assert main(imported[:-2]) == 2  # scored otherwise than the bank's entries: refused
    assert "scored with decode='rank'" in capsys.readouterr().err
    assert main(imported) == 0
    assert json.loads((copa / "scores.json").read_text())["steps"] == 0
    assert main(args) == 0  # the bank is complete: the imported entry is verified, not tuned again
    assert json.loads((copa / "scores.json").read_text())["steps"] == 0
    thetas, _ = Bank(bank, load_backbone(llama_dir, decode="rank")).stacked(["glue-sst2", "superglue-copa"], "lora")
    assert thetas.shape[0] == 2  # one anchor for tuned and imported entries alike
    _peft_lora(llama_dir, tmp_path / "r4", r=4, target_modules=["q_proj", "v_proj"])
    capsys.readouterr()
    assert main(["import-peft", str(tmp_path / "r4"), "--task", "superglue-copa", "--bank", str(bank),
                 "--decode", "rank"]) == 2
    assert "only an adapter of the bank's form can join it" in capsys.readouterr().err
