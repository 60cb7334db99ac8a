"""CrossFit's evaluation metrics, each written from its definition (SPEC §2).

Scores are fractions in [0, 1] (correlations in [-1, 1]). Per-example metrics (EM, ACC, QA-F1, Rouge-L) take
the maximum over an example's references and are averaged over examples; corpus metrics (Classification-F1,
Matthew-Correlation, Pearson-Correlation) compare the predictions with the *first* reference of each example.
Use :func:`compute_metric` with the CrossFit metric names, the keys of :data:`METRICS`.
"""

from __future__ import annotations

import logging
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

from taskspace.errors import ConfigError, DataError

__all__ = [
    "normalize_answer",
    "exact_match",
    "accuracy",
    "qa_f1",
    "rouge_l",
    "classification_f1",
    "matthews_correlation",
    "pearson_correlation",
    "METRICS",
    "compute_metric",
]

logger = logging.getLogger(__name__)

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ROUGE_TOKEN = re.compile(r"[a-z0-9]+")


# ----------------------------------------------------------------------------------------------------------------
# Per-example metrics: one prediction against its references, max over references.


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower-case, remove punctuation, remove the articles a / an / the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """EM: 1.0 when the SQuAD-normalised prediction equals a normalised reference, else 0.0."""
    pred = normalize_answer(prediction)
    return max(float(pred == normalize_answer(ref)) for ref in references)


def accuracy(prediction: str, references: Sequence[str]) -> float:
    """ACC: 1.0 when the prediction equals a reference ignoring case and surrounding whitespace, else 0.0."""
    pred = prediction.strip().lower()
    return max(float(pred == ref.strip().lower()) for ref in references)


def _token_f1(pred_tokens: Sequence[str], ref_tokens: Sequence[str]) -> float:
    if not pred_tokens or not ref_tokens:
        # Both empty: the prediction says exactly what the reference says (nothing).
        return float(not pred_tokens and not ref_tokens)
    same = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def qa_f1(prediction: str, references: Sequence[str]) -> float:
    """QA-F1: SQuAD token F1 between normalised token bags, max over references.

    0.0 when exactly one side has no tokens, 1.0 when both have none.
    """
    pred_tokens = normalize_answer(prediction).split()
    return max(_token_f1(pred_tokens, normalize_answer(ref).split()) for ref in references)


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, one row at a time)."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, references: Sequence[str]) -> float:
    """Rouge-L: LCS-based F1 on lower-cased alphanumeric tokens ([a-z0-9]+), max over references.

    0.0 when the prediction (or a reference) has no tokens.
    """
    pred_tokens = _ROUGE_TOKEN.findall(prediction.lower())
    if not pred_tokens:
        return 0.0
    best = 0.0
    for ref in references:
        ref_tokens = _ROUGE_TOKEN.findall(ref.lower())
        if not ref_tokens:
            continue
        lcs = _lcs_length(pred_tokens, ref_tokens)
        if lcs:
            precision, recall = lcs / len(pred_tokens), lcs / len(ref_tokens)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


# ----------------------------------------------------------------------------------------------------------------
# Corpus metrics: all predictions against the first reference of each example.


def _gold(references: Sequence[Sequence[str]]) -> list[str]:
    return [refs[0].strip() for refs in references]


def classification_f1(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Classification-F1: macro F1 over the gold labels (first references), surrounding whitespace ignored.

    The average runs over the labels that occur in the gold data only: a prediction that is not a gold label is
    wrong for its example (a false negative of the gold class) but adds no class of its own.
    """
    gold = _gold(references)
    preds = [p.strip() for p in predictions]
    scores = []
    for label in sorted(set(gold)):
        tp = sum(1 for g, p in zip(gold, preds) if g == label and p == label)
        fp = sum(1 for g, p in zip(gold, preds) if g != label and p == label)
        fn = sum(1 for g, p in zip(gold, preds) if g == label and p != label)
        scores.append(2 * tp / (2 * tp + fp + fn))  # fn >= 1 or tp >= 1: every label here occurs in gold
    return sum(scores) / len(scores)


def matthews_correlation(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Matthews correlation coefficient over label strings (Gorodkin's multi-class form; binary MCC for 2 labels).

    With c correct predictions out of s, t_k the gold count and p_k the predicted count of label k:
    MCC = (c s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2) (s^2 - sum_k t_k^2)); 0.0 when the denominator is
    zero (all predictions, or all gold labels, identical).
    """
    gold = _gold(references)
    preds = [p.strip() for p in predictions]
    s = len(gold)
    c = sum(g == p for g, p in zip(gold, preds))
    t, p = Counter(gold), Counter(preds)
    covariance = c * s - sum(p[k] * t[k] for k in t.keys() | p.keys())
    denominator = (s * s - sum(v * v for v in p.values())) * (s * s - sum(v * v for v in t.values()))
    if denominator <= 0:
        return 0.0
    return covariance / math.sqrt(denominator)


def _parse_float(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def pearson_correlation(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Pearson correlation between predictions and first references parsed as floats.

    A prediction that does not parse as a finite float is replaced by the mean of the parseable predictions
    (0.0 when none parse) and a warning says how many were replaced, so that a bad generation lowers the score
    instead of turning it into NaN. 0.0 when either side is constant. A reference that does not parse raises
    DataError.
    """
    gold = []
    for index, refs in enumerate(references):
        value = _parse_float(refs[0])
        if value is None:
            raise DataError(
                f"reference {refs[0]!r} of example {index} is not a number; Pearson-Correlation needs numbers"
            )
        gold.append(value)
    parsed = [_parse_float(p) for p in predictions]
    valid = [v for v in parsed if v is not None]
    fill = sum(valid) / len(valid) if valid else 0.0
    if len(valid) < len(parsed):
        logger.warning(
            "Pearson-Correlation: %d of %d predictions are not numbers; replaced by %s (the mean of the others)",
            len(parsed) - len(valid),
            len(parsed),
            fill,
        )
    xs = [fill if v is None else v for v in parsed]
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(gold) / n
    dx = [x - mean_x for x in xs]
    dy = [y - mean_y for y in gold]
    sxx, syy = sum(d * d for d in dx), sum(d * d for d in dy)
    if sxx == 0 or syy == 0:
        return 0.0
    r = sum(a * b for a, b in zip(dx, dy)) / math.sqrt(sxx * syy)
    return max(-1.0, min(1.0, r))  # rounding can step just outside [-1, 1]


# ----------------------------------------------------------------------------------------------------------------
# Registry


def _mean_over_examples(per_example: Callable[[str, Sequence[str]], float]) -> Callable[..., float]:
    def corpus(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
        return sum(per_example(p, refs) for p, refs in zip(predictions, references)) / len(predictions)

    corpus.__name__ = f"mean_{per_example.__name__}"
    corpus.__doc__ = f"Mean over examples of {per_example.__name__}."
    return corpus


#: CrossFit metric name -> corpus-level function (predictions, references) -> float.
METRICS: dict[str, Callable[[Sequence[str], Sequence[Sequence[str]]], float]] = {
    "EM": _mean_over_examples(exact_match),
    "ACC": _mean_over_examples(accuracy),
    "QA-F1": _mean_over_examples(qa_f1),
    "Classification-F1": classification_f1,
    "Rouge-L": _mean_over_examples(rouge_l),
    "Matthew-Correlation": matthews_correlation,
    "Pearson-Correlation": pearson_correlation,
}


def compute_metric(name: str, predictions: Sequence[str], references: Sequence[Sequence[str] | str]) -> float:
    """Score predictions with a CrossFit metric.

    ``references`` holds one sequence of reference strings per example (a bare string counts as one reference).
    Raises ConfigError for an unknown metric name, ValueError for empty input, mismatched lengths, or an example
    without references.
    """
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}; expected one of {', '.join(METRICS)}")
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} reference lists; expected one per example"
        )
    if not predictions:
        raise ValueError("0 predictions and 0 reference lists: cannot score an empty evaluation set")
    refs = [(r,) if isinstance(r, str) else tuple(r) for r in references]
    empty = [i for i, r in enumerate(refs) if not r]
    if empty:
        raise ValueError(f"{len(empty)} examples have no reference (first: example {empty[0]})")
    return METRICS[name](list(predictions), refs)
