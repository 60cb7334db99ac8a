"""The frozen backbone as the user loads it: the attention implementation chosen (prefixes wrap it), dropout off
unless asked for, and both recorded."""

from __future__ import annotations

import pytest
import torch

from taskspace.backbones import load_backbone, reload_backbone, wrap_model
from taskspace.deltas import build_method
from taskspace.errors import ConfigError
from taskspace.tasks import load_task
from tiny import tiny_model

PREFIX = {"n_tokens": 3, "hidden": 8}


@pytest.fixture(scope="module")
def examples(data_dir):
    # different lengths, so that padding is masked; one generative example
    return load_task("glue-sst2", data_dir).train[:2] + load_task("web_questions", data_dir).train[:1]


def _prefix_loss(backbone, examples, grad=True, seed=0):
    """Per-example losses under a prefix, and their gradient with respect to theta (``grad``)."""
    method = build_method("prefix", backbone, PREFIX)
    g = torch.Generator().manual_seed(seed)
    theta = method.init(g)
    theta = (theta + 0.5 * torch.randn(theta.shape, generator=g)).requires_grad_(grad)
    batch = backbone.collate(examples, [e.references[0] for e in examples])
    with method.bind(theta), torch.set_grad_enabled(grad):
        loss = backbone.loss(batch)
    if not grad:
        return loss, None
    return loss.detach(), torch.autograd.grad(loss.sum(), theta)[0]


@pytest.mark.parametrize("impl", ["eager", pytest.param("flex_attention", marks=pytest.mark.slow)])  # flex compiles
def test_prefix_wraps_the_chosen_implementation(impl, shared_dir, examples):
    """A prefix under eager or flex attention gives the losses and gradients it gives under sdpa; without a
    prefix the backbone computes exactly what the model loaded with that implementation computes. (PyTorch has no
    flex-attention backward on the CPU: there, the losses only.)"""
    path = f"{shared_dir}/models/stories260K"
    sdpa = load_backbone(path)
    other = load_backbone(path, attn_implementation=impl)
    assert other.attn_implementation == impl and other.model.config._attn_implementation == f"taskspace-{impl}"
    assert other.describe()["attn_implementation"] == impl
    grad = impl != "flex_attention"
    loss_s, grad_s = _prefix_loss(sdpa, examples, grad)
    loss_o, grad_o = _prefix_loss(other, examples, grad)
    assert torch.allclose(loss_s, loss_o, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(loss_o, _prefix_loss(other, examples, False, seed=1)[0])  # the prefix matters
    if grad:
        assert torch.allclose(grad_s, grad_o, atol=1e-4, rtol=1e-3)

    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(path, attn_implementation=impl).eval()
    ids = torch.randint(5, 200, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    with torch.no_grad():
        assert torch.equal(other.model(input_ids=ids, attention_mask=mask).logits,
                           reference(input_ids=ids, attention_mask=mask).logits)


def test_recorded_implementation_is_reloaded(shared_dir):
    backbone = load_backbone(f"{shared_dir}/models/stories260K", attn_implementation="eager")
    again = reload_backbone(backbone.describe())
    assert again.attn_implementation == "eager"
    with pytest.raises(ConfigError, match="attn_implementation='nonsense'"):
        load_backbone(f"{shared_dir}/models/stories260K", attn_implementation="nonsense")


def test_prefix_is_refused_on_flash_attention(shared_dir):
    """Flash attention's masks are sequence lengths: it is left unwrapped, and a prefix says so (other methods
    bind as usual)."""
    model, tok = tiny_model("gpt2", str(shared_dir))
    model.config._attn_implementation = "flash_attention_2"
    backbone = wrap_model(model, tok, name="tiny-gpt2-flash")
    assert backbone.attn_implementation == "flash_attention_2"
    assert model.config._attn_implementation == "flash_attention_2"
    method = build_method("prefix", backbone, PREFIX)
    with pytest.raises(ConfigError, match="attn_implementation=<sdpa|eager|flex_attention>"):
        with method.bind(method.init(torch.Generator().manual_seed(0))):
            pass
    lora = build_method("lora", backbone, {"r": 2})
    with lora.bind(lora.init(torch.Generator().manual_seed(0))):
        pass


def _bart_with_dropout(shared_dir, **options):
    model, tok = tiny_model("bart", str(shared_dir))
    model.config.dropout = 0.3
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.3
        if hasattr(module, "dropout") and isinstance(module.dropout, float):
            module.dropout = 0.3
    return wrap_model(model, tok, name="tiny-bart", **options)


def test_frozen_model_has_no_dropout_in_training_mode(shared_dir, examples):
    """In training mode (as the training loop sets it) the frozen model's dropout stays off: two forward passes of
    one batch agree, unless the backbone is built with dropout=True (the papers' code)."""
    for dropout in (False, True):
        backbone = _bart_with_dropout(shared_dir, dropout=dropout)
        backbone.train()
        assert backbone.training
        batch = backbone.collate(examples, [e.references[0] for e in examples])
        torch.manual_seed(0)
        first = backbone.loss(batch)
        second = backbone.loss(batch)
        assert torch.equal(first, second) != dropout
        assert backbone.describe()["dropout"] is dropout
    with pytest.raises(ConfigError, match="dropout='yes'"):
        _bart_with_dropout(shared_dir, dropout="yes")
