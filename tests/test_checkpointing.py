"""Gradient checkpointing of the frozen backbone: the same losses and gradients for every delta method, with the
layers recomputed in the backward pass after the deltas were unbound (as the training loop does)."""

from __future__ import annotations

import pytest
import torch

from taskspace.backbones import load_backbone
from taskspace.deltas import build_method
from taskspace.errors import ConfigError
from taskspace.tasks import load_task
from tiny import SMALL, tiny_backbone


def _backbone(kind, shared_dir, **options):
    if kind == "llama":
        return load_backbone(f"{shared_dir}/models/stories260K", dtype="float32", **options)
    return tiny_backbone(kind, str(shared_dir), **options)


@pytest.fixture(scope="module")
def examples(data_dir):
    return load_task("glue-sst2", data_dir).train[:2] + load_task("web_questions", data_dir).train[:1]


def _loss_and_grad(backbone, name, examples, per_example):
    method = build_method(name, backbone, SMALL[name])
    g = torch.Generator().manual_seed(0)
    rows = len(examples) if per_example else 1
    theta = torch.stack([method.init(g) + 0.05 * torch.randn(method.size, generator=g) for _ in range(rows)])
    theta = theta if per_example else theta[0]
    theta.requires_grad_(True)
    batch = backbone.collate(examples, [e.references[0] for e in examples])
    backbone.train()
    with method.bind(theta):
        loss = backbone.loss(batch)
    loss.sum().backward()  # outside the bind, as train() does: the recomputation must see the deltas again
    backbone.eval()
    return loss.detach(), theta.grad


def _count_attention_calls(backbone):
    calls = []
    for block in backbone.sites.blocks:
        for _, site in block.attentions():
            site.module.register_forward_hook(lambda *a: calls.append(1))
    return calls


@pytest.mark.parametrize("kind", ["llama", "t5", "bart"])
@pytest.mark.parametrize("name", list(SMALL))
def test_checkpointed_layers_give_the_same_gradients(kind, name, shared_dir, examples):
    plain = _backbone(kind, shared_dir)
    checkpointed = _backbone(kind, shared_dir, gradient_checkpointing=True)
    assert checkpointed.describe()["gradient_checkpointing"] is True
    per_example = build_method(name, plain, SMALL[name]).supports_per_example and name != "finetune"
    calls = _count_attention_calls(checkpointed)
    loss_p, grad_p = _loss_and_grad(plain, name, examples, per_example)
    loss_c, grad_c = _loss_and_grad(checkpointed, name, examples, per_example)
    forward_calls = len(calls)
    assert torch.allclose(loss_p, loss_c, atol=1e-6)
    assert grad_p.abs().sum() > 0
    assert torch.allclose(grad_p, grad_c, atol=1e-6, rtol=1e-5)
    # every attention module ran again in the backward pass (it is recomputed, not kept)
    calls.clear()
    with torch.no_grad():
        method = build_method(name, checkpointed, SMALL[name])
        with method.bind(method.init(torch.Generator().manual_seed(0))):
            checkpointed.loss(checkpointed.collate(examples, [e.references[0] for e in examples]))
    assert forward_calls == 2 * len(calls) > 0


def test_checkpointing_needs_checkpointable_layers(shared_dir):
    with pytest.raises(ConfigError, match="gradient_checkpointing=1"):
        _backbone("t5", shared_dir, gradient_checkpointing=1)


def test_a_reloaded_backbone_evaluates_without_checkpointing(shared_dir):
    """Checkpointing saves memory in training only: a run's recorded backbone is reloaded (predict, export)
    without it, so copies of its model (export --format merged) run their own layers."""
    from taskspace.backbones import reload_backbone

    described = _backbone("llama", shared_dir, gradient_checkpointing=True).describe()
    assert described["gradient_checkpointing"] is True
    assert reload_backbone(described).gradient_checkpointing is False
