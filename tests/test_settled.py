"""Generation that stops once an answer's score is settled: the test never settles an answer that could still
match, and evaluation with it gives the scores of full generation while generating fewer tokens."""

from __future__ import annotations

import random

import pytest
import torch

from taskspace.evaluation import evaluate, predict
from taskspace.tasks import Example, compute_metric, load_task
from taskspace.tasks.settled import SETTLED_METRICS, settled_check
from tiny import tiny_backbone

PIECES = ["the", "a", "an", "The", "them", "positive", "negative", "pos", "itive", "Paris", "par", "is", " ", "  ",
          "\n", ".", ",", "!", "'", "-", "é", "Σ", "σ", "ς", "ΑΣ", "日本", "x", "1", "10", "acceptable",
          "accept", "able", "un", "ANSWER", "answer"]


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 7)))


def _score(metric: str, prediction: str, references) -> float:
    return compute_metric(metric, [prediction], [tuple(references)])


@pytest.mark.parametrize("metric", sorted(SETTLED_METRICS))
def test_a_settled_prefix_never_becomes_a_match(metric):
    """Every split of many random answers: when the text so far (also with an incomplete character's U+FFFD at
    its end) is called settled, the full answer scores as a non-match. Answers built from references' pieces
    make matches frequent, and the test must settle a good share of the non-matching ones."""
    rng = random.Random(0)
    check = settled_check(metric)
    settled = matched = 0
    for _ in range(3000):
        references = [_random_text(rng) or "x" for _ in range(rng.randint(1, 2))]
        if metric == "Matthew-Correlation":
            references = [rng.choice(["acceptable", "unacceptable"])]
        full = rng.choice([references[0], references[0] + _random_text(rng), _random_text(rng),
                           " " + references[0].upper() + " ", references[0].replace(" ", "  ") + "."])
        non_match = _score(metric, full, references) <= 0 if metric != "Matthew-Correlation" else \
            full.strip() != "acceptable"
        matched += not non_match
        for cut in range(len(full) + 1):
            for text in (full[:cut], full[:cut] + "\ufffd"):
                if check(text, references):
                    settled += 1
                    assert non_match, (metric, text, full, references)
    assert matched > 300 and settled > 1000


def test_metrics_without_a_settled_form():
    for metric in ("Classification-F1", "QA-F1", "Rouge-L", "Pearson-Correlation"):
        assert settled_check(metric) is None


def test_examples():
    em, acc = settled_check("EM"), settled_check("ACC")
    assert not em("The", ["Paris"])            # an article may be dropped, the word may grow
    assert not em("the Par", ["Paris"])        # still the beginning of the answer
    assert em("the Lon", ["Paris"]) is False   # the last word may still grow into anything
    assert em("the London ", ["Paris"])        # a finished word that is not the answer's start
    assert not acc("Positive", ["positive"]) and not acc("", ["positive"])
    assert acc("Positive review", ["positive"])
    assert not acc("ΑΣ", ["x"])                # a capital sigma: its lower case waits for the next letter


@pytest.mark.parametrize("kind", ("gpt2", "t5"))
@pytest.mark.parametrize("metric", ("EM", "ACC"))
def test_evaluation_scores_equal_full_generation(kind, metric, shared_dir, data_dir):
    """The tiny random model's own full answers, their prefixes and variants as references: the scores with
    settling equal those without it, each settled answer is the beginning of the full one, and fewer tokens are
    generated: fewer rows run through each step (the random model babbles up to max_output_length)."""
    backbone = tiny_backbone(kind, str(shared_dir), max_output_length=12)
    inputs = [e.input for e in load_task("glue-sst2", data_dir).train[:16]]
    full = predict(backbone, [Example(i, ("?",)) for i in inputs])
    examples = []
    for i, (text, answer) in enumerate(zip(inputs, full)):
        words = answer.split()
        # a match, a match up to case, a non-match from half-way, one that stays a prefix, one from the start
        refs = [answer, answer.upper(), " ".join(words[: len(words) // 2]), answer + " more", "unrelated words"]
        examples.append(Example(text, (refs[i % len(refs)],)))
    calls = {"n": 0}
    forward = backbone.model.forward

    def counted(*args, **kwargs):  # rows of each generation step (and of each prefill)
        ids = kwargs.get("decoder_input_ids", kwargs.get("input_ids"))
        calls["n"] += ids.shape[0] if ids is not None else 0
        return forward(*args, **kwargs)

    backbone.model.forward = counted
    try:
        plain, plain_preds = evaluate(backbone, examples, metric, batch_size=8)
        n_plain, calls["n"] = calls["n"], 0
        fast, fast_preds = evaluate(backbone, examples, metric, batch_size=8, settle=True)
        n_fast = calls["n"]
    finally:
        del backbone.model.forward
    assert plain_preds == full
    assert fast == plain and 0 < plain < 1
    assert all(f == p or p.startswith(f) for f, p in zip(fast_preds, plain_preds))
    assert n_fast < n_plain


def test_predict_without_settling_keeps_whole_answers(shared_dir, data_dir):
    """Showing answers (``predict``, a run's written predictions) never cuts them."""
    backbone = tiny_backbone("gpt2", str(shared_dir), max_output_length=8)
    examples = [Example(e.input, ("zzz",)) for e in load_task("glue-sst2", data_dir).train[:4]]
    with torch.no_grad():
        whole = predict(backbone, examples)
        cut = predict(backbone, examples, settle=settled_check("ACC"))
    assert whole == evaluate(backbone, examples, "ACC")[1]
    assert all(len(c) < len(w) for c, w in zip(cut, whole))
