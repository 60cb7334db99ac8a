"""Backbone behaviour: exactness against the plain Hugging Face model, generation, ranking, loading, peft parity."""

from __future__ import annotations

import copy

import peft
import pytest
import torch

from taskspace.backbones import load_backbone, meta_backbone, wrap_model
from taskspace.deltas import build_method
from taskspace.errors import ConfigError
from taskspace.tasks import Example, load_task
from tiny import tiny_backbone, tiny_model

SEQ2SEQ_CAUSAL = ("t5", "bart", "gpt2", "llama")


def _hf_pair(kind, shared_dir):
    """Our backbone and an untouched copy of the same Hugging Face model (sdpa attention)."""
    if kind == "llama":
        backbone = load_backbone(f"{shared_dir}/models/stories260K")
        reference = copy.deepcopy(backbone.model)
    elif kind == "minilm":
        backbone = load_backbone("minilm")
        reference = copy.deepcopy(backbone.model)
    else:
        model, tok = tiny_model(kind, str(shared_dir))
        reference = copy.deepcopy(model)
        backbone = wrap_model(model, tok, name=kind)
    for cfg in {id(m.config): m.config for m in reference.modules() if hasattr(m, "config")}.values():
        cfg._attn_implementation = "sdpa"
    return backbone, reference.eval()


@pytest.mark.parametrize("kind", SEQ2SEQ_CAUSAL + ("minilm",))
def test_taskspace_attention_is_exactly_sdpa(kind, shared_dir):
    backbone, reference = _hf_pair(kind, shared_dir)
    ids = torch.randint(5, 200, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    kwargs = {"input_ids": ids, "attention_mask": mask}
    if kind in ("t5", "bart"):
        kwargs["decoder_input_ids"] = torch.randint(5, 200, (3, 4))
    with torch.no_grad():
        ours = backbone.model(**kwargs)
        theirs = reference(**kwargs)
    key = "last_hidden_state" if kind == "minilm" else "logits"
    assert torch.equal(ours[key], theirs[key])


@pytest.mark.parametrize("kind", SEQ2SEQ_CAUSAL)
def test_greedy_generation_matches_transformers(kind, shared_dir, data_dir):
    backbone, reference = _hf_pair(kind, shared_dir)
    backbone.max_output_length = 12
    examples = load_task("web_questions", data_dir).train[:3]
    ours = backbone.generate(backbone.collate(examples))
    tok = backbone.tokenizer
    theirs = []
    for e in examples:  # one at a time: no padding, so transformers' defaults need no care
        if kind in ("t5", "bart"):
            enc = tok(backbone.format_input(e), return_tensors="pt")
        else:  # the template's layout around the input (a newline and "Answer:" by default)
            enc = {"input_ids": torch.tensor([backbone._prompt_ids(e)])}
        kwargs = dict(do_sample=False, num_beams=1, max_new_tokens=12, pad_token_id=backbone.pad_id)
        if kind in ("t5", "bart"):
            kwargs["decoder_start_token_id"] = backbone.decoder_start_id
            kwargs["eos_token_id"] = backbone.eos_id
        out = reference.generate(**enc, **kwargs)
        new = out[0] if kind in ("t5", "bart") else out[0, enc["input_ids"].shape[1]:]
        theirs.append(tok.decode(new, skip_special_tokens=True).strip())
    assert ours == theirs


@pytest.mark.parametrize("kind", ("t5", "gpt2", "minilm"))
def test_option_scores_are_the_losses_of_each_option(kind, shared_dir, data_dir):
    """Ranking scores an option by minus the loss of training on it (mean token NLL, or the encoder's logit)."""
    backbone = tiny_backbone(kind, str(shared_dir), decode="rank")
    example = load_task("superglue-copa", data_dir).train[0]
    scores = backbone.option_scores(backbone.collate([example]))[0]
    with torch.no_grad():
        losses = backbone.loss(backbone.collate([example] * len(example.options), list(example.options)))
    if kind == "minilm":
        # Cross-entropy over options: loss_k = logsumexp(scores) - score_k.
        torch.testing.assert_close(-losses, scores - torch.logsumexp(scores, 0))
    else:
        torch.testing.assert_close(-losses, scores)
    assert backbone.predict(backbone.collate([example]))[0] == example.options[int(scores.argmax())]


def test_encoder_rejects_tasks_without_options(data_dir):
    backbone = load_backbone("minilm")
    generative = load_task("web_questions", data_dir).train[:1]
    with pytest.raises(ConfigError, match="has no options.*seq2seq or causal"):
        backbone.collate(generative)
    with pytest.raises(ConfigError, match="web_questions"):
        backbone.check_task(False, "web_questions")


def test_mixed_batches_rank_and_generate(shared_dir, data_dir):
    backbone = tiny_backbone("t5", str(shared_dir), decode="rank")
    ranked = load_task("glue-sst2", data_dir).train[:2]
    generated = load_task("web_questions", data_dir).train[:2]
    mixed = [ranked[0], generated[0], ranked[1], generated[1]]
    preds = backbone.predict(backbone.collate(mixed))
    assert preds[0] in ranked[0].options and preds[2] in ranked[1].options
    assert preds[1] == backbone.predict(backbone.collate([generated[0]]))[0]


def test_local_paths_never_touch_the_network(shared_dir, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    llama = load_backbone(f"{shared_dir}/models/stories260K")
    assert llama.family == "causal" and llama.num_parameters() == 260_032
    minilm = load_backbone("minilm")
    assert minilm.family == "encoder" and minilm.hidden_size == 384 and minilm.max_input_length == 256


def test_bad_backbone_names_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_backbone("./no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        load_backbone(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="--family"):
        load_backbone("minilm", family="vision")


def test_fingerprint_identifies_weights(shared_dir):
    a = tiny_backbone("gpt2", str(shared_dir), seed=0)
    b = tiny_backbone("gpt2", str(shared_dir), seed=0)
    c = tiny_backbone("gpt2", str(shared_dir), seed=1)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert len(a.fingerprint()) == 64


def test_parameter_overrides_replace_tied_weights_together(shared_dir, data_dir):
    backbone = tiny_backbone("gpt2", str(shared_dir))
    batch = backbone.collate(load_task("glue-sst2", data_dir).train[:2])
    name = "transformer.wte.weight"  # also the LM head (tied)
    assert backbone.model.lm_head.weight is backbone.model.transformer.wte.weight
    with torch.no_grad():
        before = backbone.loss(batch)
        handle = backbone.override_parameters({name: backbone.base_parameters[name] * 2})
        assert backbone.model.lm_head.weight is backbone.model.transformer.wte.weight
        changed = backbone.loss(batch)
        with backbone.suspended():
            assert torch.equal(backbone.loss(batch), before)
        handle.remove()
        assert torch.equal(backbone.loss(batch), before)
    assert not torch.equal(changed, before)
    assert isinstance(backbone.model.lm_head.weight, torch.nn.Parameter)


# ----------------------------------------------------------------------------------------------------------------
# Parity with peft: the same parameters give the same outputs.


def test_lora_matches_peft(shared_dir):
    # (GPT-2 is left out: peft adapts its fused c_attn as a whole, taskspace adapts the q and v slices of it.)
    kind = "minilm"
    backbone, reference = _hf_pair(kind, shared_dir)
    method = build_method("lora", backbone, {"r": 4, "alpha": 8, "targets": ("q", "v")})
    g = torch.Generator().manual_seed(0)
    theta = method.init(g) + 0.1 * torch.randn(method.size, generator=g)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], lora_dropout=0.0)
    peft_model = peft.get_peft_model(reference, config).eval()
    views = method.layout.unflatten(theta)
    with torch.no_grad():
        for i, layer in enumerate(peft_model.base_model.model.encoder.layer):
            for role, module in (("q", layer.attention.self.query), ("v", layer.attention.self.value)):
                module.lora_A["default"].weight.copy_(views[f"encoder.{i}.self_attn.{role}.lora_A"])
                module.lora_B["default"].weight.copy_(views[f"encoder.{i}.self_attn.{role}.lora_B"])
    ids = torch.randint(1000, 2000, (2, 7))
    with torch.no_grad(), method.bind(theta):
        ours = backbone.model(input_ids=ids).last_hidden_state
    with torch.no_grad():
        theirs = peft_model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ("gpt2", "minilm"))
def test_prompt_tuning_matches_peft(kind, shared_dir):
    backbone, reference = _hf_pair(kind, shared_dir)
    method = build_method("prompt", backbone, {"n_tokens": 5})
    theta = method.init(torch.Generator().manual_seed(0)) * 10
    task_type = "CAUSAL_LM" if kind == "gpt2" else "FEATURE_EXTRACTION"
    config = peft.PromptTuningConfig(task_type=task_type, num_virtual_tokens=5)
    peft_model = peft.get_peft_model(reference, config).eval()
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.copy_(theta.view(5, -1))
    ids = torch.randint(1000, 2000, (2, 7))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        theirs = peft_model(input_ids=ids, attention_mask=mask)
        with method.bind(theta):
            embeds, full_mask, n = backbone._embed_inputs(ids, mask)
            ours = backbone.model(inputs_embeds=embeds, attention_mask=full_mask)
    key = "logits" if kind == "gpt2" else "last_hidden_state"
    torch.testing.assert_close(ours[key][:, -7:], theirs[key][:, -7:], rtol=1e-5, atol=1e-5)


def test_meta_backbone_needs_no_weights(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128).save_pretrained(tmp_path)
    backbone = meta_backbone(str(tmp_path))
    assert backbone.device.type == "meta"
    with pytest.raises(ConfigError, match="without a tokenizer"):
        backbone.collate([Example("x", ("a",), ("a", "b"))])


def test_an_unreachable_hub_name_is_one_clear_error(monkeypatch):
    """A name that is neither built in nor a folder goes to the hub; when that fails, the error says what was
    tried instead of transformers' OSError."""
    import transformers

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck your connection.")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", offline)
    with pytest.raises(ConfigError, match=r"backbone 'some-org/some-model' is neither a built-in name \(smollm2, "
                                          r"minilm\) nor a local model folder.*couldn't connect"):
        load_backbone("some-org/some-model")


def test_device_auto_is_cuda_when_present_else_cpu(monkeypatch):
    from taskspace.backbones import _check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _check_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _check_device("auto") == torch.device("cuda")
    import inspect

    from taskspace.backbones import load_backbone

    assert inspect.signature(load_backbone).parameters["device"].default == "auto"
