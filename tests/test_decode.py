"""Decoding: the generate / rank protocols, KV-cached option scores, answer-only LM head, per-row stopping."""

from __future__ import annotations

import pytest
import torch

from taskspace.backbones import load_backbone
from taskspace.backbones.base import token_nll
from taskspace.deltas import build_method
from taskspace.errors import ConfigError
from taskspace.tasks import load_task
from tiny import tiny_backbone

SMALL = {"prompt": {"n_tokens": 3}, "prefix": {"n_tokens": 3, "hidden": 8}, "lora": {"r": 2}, "adapter": {"r": 4}}


@pytest.fixture(scope="module")
def mixed(data_dir):
    """Examples with 2, 2 and 4 options of different lengths."""
    return (load_task("glue-sst2", data_dir).train[:2] + load_task("superglue-copa", data_dir).train[:1]
            + load_task("ag_news", data_dir).train[:2])


def _per_example_theta(method, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = torch.stack([method.init(torch.Generator().manual_seed(seed + i)) for i in range(n)])
    return rows + 0.05 * torch.randn(rows.shape, generator=g)  # LoRA B / adapter W_up leave zero: move them


@pytest.mark.parametrize("kind", ("t5", "gpt2"))
def test_generate_is_the_default_and_answers_option_tasks_by_text(kind, shared_dir, mixed):
    generating = tiny_backbone(kind, str(shared_dir), max_output_length=6)
    ranking = tiny_backbone(kind, str(shared_dir), max_output_length=6, decode="rank")
    assert generating.decode == "generate" and generating.describe()["decode"] == "generate"
    batch = generating.collate(mixed)
    with torch.no_grad():
        generated = generating.predict(batch)
        ranked = ranking.predict(ranking.collate(mixed))
    assert generated == generating.generate(batch)
    assert all(p in e.options for p, e in zip(ranked, mixed))
    # The tiny random models babble: generated text is not an option, which only ranking would hide.
    assert any(p not in e.options for p, e in zip(generated, mixed))


def test_encoder_can_only_rank():
    with pytest.raises(ConfigError, match="encoder family can use rank"):
        load_backbone("minilm", decode="generate")
    assert load_backbone("minilm").decode == "rank"


@pytest.mark.parametrize("kind", ("gpt2", "llama"))
@pytest.mark.parametrize("method_name", (None, "prompt", "prefix", "lora", "adapter"))
def test_kv_cached_option_scores_equal_the_reencoded_ones(kind, method_name, shared_dir, mixed):
    """The input is encoded once and its cache reused per option; scores equal one full pass per option, also
    with a different theta per example (the cache rows and the row map must follow each example)."""
    backbone = tiny_backbone(kind, str(shared_dir))
    batch = backbone.collate(mixed)
    if method_name is None:
        fast, slow = backbone.option_scores(batch), backbone.option_scores_reencoded(batch)
    else:
        method = build_method(method_name, backbone, SMALL[method_name])
        with method.bind(_per_example_theta(method, len(mixed))):
            fast, slow = backbone.option_scores(batch), backbone.option_scores_reencoded(batch)
    assert [len(s) for s in fast] == [len(e.options) for e in mixed]
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ("t5", "gpt2"))
def test_option_scores_are_never_label_smoothed(kind, shared_dir, mixed):
    plain = tiny_backbone(kind, str(shared_dir))
    smoothed = tiny_backbone(kind, str(shared_dir), label_smoothing=0.2)
    batch = plain.collate(mixed)
    for a, b in zip(plain.option_scores(batch), smoothed.option_scores(smoothed.collate(mixed))):
        torch.testing.assert_close(a, b)
    # ... while the training loss is smoothed.
    with torch.no_grad():
        assert not torch.allclose(plain.loss(batch), smoothed.loss(smoothed.collate(mixed)))


@pytest.mark.parametrize("kind", ("gpt2", "llama"))
def test_answer_only_lm_head_gives_the_full_sequence_loss(kind, shared_dir, mixed):
    """The causal loss runs the LM head on the answer positions only; it equals the NLL read off the full logits
    of each example run alone (no padding at all)."""
    backbone = tiny_backbone(kind, str(shared_dir))
    method = build_method("prompt", backbone, SMALL["prompt"])
    theta = method.init(torch.Generator().manual_seed(0))
    with torch.no_grad(), method.bind(theta):
        ours = backbone.loss(backbone.collate(mixed))
        for i, example in enumerate(mixed):
            one = backbone.collate([example])
            embeds, mask, n = backbone._embed_inputs(one["input_ids"], one["attention_mask"])
            logits = backbone.model(inputs_embeds=embeds, attention_mask=mask).logits[:, n:]
            reference = token_nll(logits[:, :-1], one["labels"][:, 1:])
            torch.testing.assert_close(ours[i : i + 1], reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ("t5", "gpt2", "llama"))
def test_batched_generation_with_rows_leaving_equals_one_at_a_time(kind, shared_dir, mixed, data_dir):
    """Rows that reach EOS leave the batch; every row still gets exactly what it gets alone, with its own theta."""
    backbone = tiny_backbone(kind, str(shared_dir), max_output_length=10)
    examples = mixed + load_task("web_questions", data_dir).train[:3]
    method = build_method("lora", backbone, SMALL["lora"])
    theta = _per_example_theta(method, len(examples))

    def run_together():
        with torch.no_grad(), method.bind(theta):
            return backbone.generate(backbone.collate(examples))

    # Random tiny models rarely say EOS: declare a token that some rows generate (and others do not) the EOS
    # token, so that rows stop at different steps.
    first = run_together()
    candidates = [t for text in first for t in backbone.tokenizer(text, add_special_tokens=False).input_ids]
    for token in dict.fromkeys(candidates):
        backbone.eos_id = token
        together = run_together()
        lengths = {len(backbone.tokenizer(t, add_special_tokens=False).input_ids) for t in together}
        if len(lengths) > 1 and min(lengths) < 9:
            break
    else:
        pytest.fail("no token makes the rows stop at different steps")
    alone = []
    for i, example in enumerate(examples):
        with torch.no_grad(), method.bind(theta[i]):
            alone.append(backbone.generate(backbone.collate([example]))[0])
    assert together == alone
