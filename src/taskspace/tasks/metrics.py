"""CrossFit's evaluation metrics (SPEC §2).

Scores are fractions in [0, 1] (correlations in [-1, 1]). Per-example metrics (EM, ACC, QA-F1, Rouge-L) take
the maximum over an example's references and are averaged over examples; corpus metrics (Classification-F1,
Matthew-Correlation, Pearson-Correlation) compare the predictions with the *first* reference of each example.
Use :func:`compute_metric` with the CrossFit metric names, the keys of :data:`METRICS`.

EM, ACC, QA-F1 and Pearson-Correlation are written from their definitions. Rouge-L, Classification-F1 and
Matthew-Correlation reproduce what CrossFit's own evaluation code computes (``dataloader/metrics.py`` of
INK-USC/CrossFit: ``get_rouge_over_list``, ``f1_score(..., average="macro")``, ``get_matthews_corr``), written
here without depending on the packages it calls:

* Rouge-L: ``Rouge().get_scores(prediction, reference)[0]["rouge-l"]["f"]`` of the ``rouge==1.0.1`` package,
  max over references (:func:`rouge_l` gives the package's exact semantics). CrossFit returns 0.0 without calling
  the package when the prediction is empty once the ASCII punctuation (``string.punctuation``) is removed; only
  punctuation is removed, so a whitespace-only prediction is scored by the package (usually 0.0).
* Classification-F1: sklearn's ``f1_score(gold, predictions, average="macro")``: the macro average runs over the
  union of gold and predicted labels, so a predicted label that never occurs in the gold data adds a class with
  F1 0. Unlike CrossFit, surrounding whitespace is stripped from both sides first.
* Matthew-Correlation: a prediction is 1 when ``prediction.strip() == "acceptable"``, a gold label when it equals
  ``"acceptable"`` exactly, else 0; then sklearn's ``matthews_corrcoef`` on the two binary vectors (0.0 when
  undefined).
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
    "register_metric",
    "resolve_metric",
]

logger = logging.getLogger(__name__)

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


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


def _rouge_sentences(text: str) -> list[list[str]]:
    """Sentences as rouge 1.0.1 reads them: pieces between "." (empty pieces dropped), split on whitespace.

    The package rejoins each piece's whitespace-split words with one space and splits that on " ", so a piece
    holding only whitespace becomes a sentence with one empty-string token.
    """
    return [piece.split() or [""] for piece in text.split(".") if piece]


def _lcs_tokens(reference: Sequence[str], candidate: Sequence[str]) -> set[str]:
    """The set of tokens of the one longest common subsequence that rouge 1.0.1 reconstructs.

    Full LCS table, then the package's backtrack from the end: take the token when the two match, else step back
    in the reference when that keeps a strictly longer LCS, otherwise step back in the candidate. Which LCS is
    taken matters, because Rouge-L counts its distinct tokens.
    """
    if not set(reference) & set(candidate):
        return set()
    width = len(candidate) + 1
    table = [[0] * width]
    for x in reference:
        above, row = table[-1], [0]
        for j, y in enumerate(candidate, start=1):
            row.append(above[j - 1] + 1 if x == y else max(above[j], row[j - 1]))
        table.append(row)
    tokens: set[str] = set()
    i, j = len(reference), len(candidate)
    while i > 0 and j > 0:
        if reference[i - 1] == candidate[j - 1]:
            tokens.add(reference[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return tokens


def _rouge_l_single(prediction: str, reference: str) -> float:
    """Summary-level Rouge-L F of rouge 1.0.1 (``exclusive=True``) for one prediction against one reference.

    The union of the LCS token sets of every (reference sentence, prediction sentence) pair, counted as distinct
    tokens, over the number of distinct tokens of the reference (R) and of the prediction (P); F =
    2 P R / (P + R + 1e-8), the package's formula (so a perfect match scores 1 - 5e-9, not 1).
    """
    candidate = _rouge_sentences(prediction)
    reference_sentences = _rouge_sentences(reference)
    if not candidate or not reference_sentences:
        return 0.0  # the package raises ValueError ("... is empty") here
    union: set[str] = set()
    for ref_sentence in reference_sentences:
        for cand_sentence in candidate:
            union |= _lcs_tokens(ref_sentence, cand_sentence)
    llcs = len(union)
    r_lcs = llcs / len({t for sentence in reference_sentences for t in sentence})
    p_lcs = llcs / len({t for sentence in candidate for t in sentence})
    return 2.0 * ((p_lcs * r_lcs) / (p_lcs + r_lcs + 1e-8))


def rouge_l(prediction: str, references: Sequence[str]) -> float:
    """Rouge-L as CrossFit computes it: rouge 1.0.1's summary-level Rouge-L F, max over references.

    0.0 when the prediction has no character left after removing ASCII punctuation (CrossFit's rule; whitespace
    is kept, so "  " is scored, normally 0.0). Otherwise, as ``Rouge().get_scores(prediction, reference)``:

    * text is split into sentences on "." (empty pieces dropped) and sentences into tokens on whitespace; tokens
      are case-sensitive and keep the punctuation attached to them ("World!" differs from "world"), so
      "Hello, World!" against "hello world" scores 0.0;
    * the LCS tokens of every (reference sentence, prediction sentence) pair are pooled as a *set*, and lengths
      are numbers of *distinct* tokens: "cat cat cat" against "cat dog" has P = 1/1, R = 1/2;
    * F = 2 P R / (P + R + 1e-8), not plain 2PR/(P+R): an exact match scores 1 - 5e-9.

    A reference with no sentence ("" or only dots), on which the package raises, scores 0.0. Long sentences are
    fine here (the package's recursive backtrack hits Python's recursion limit near 1000 tokens).
    """
    if all(ch in _PUNCTUATION for ch in prediction):
        return 0.0
    return max(_rouge_l_single(prediction, ref) for ref in references)


# ----------------------------------------------------------------------------------------------------------------
# Corpus metrics: all predictions against the first reference of each example.


def _gold(references: Sequence[Sequence[str]]) -> list[str]:
    return [refs[0].strip() for refs in references]


def classification_f1(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Classification-F1 as CrossFit computes it: sklearn's ``f1_score(gold, predictions, average="macro")``.

    Gold labels are the first references; surrounding whitespace is stripped from gold and predictions (CrossFit
    does not strip). The macro average runs over the union of gold and predicted labels: a predicted label that
    never occurs in the gold data adds a class of its own with F1 0 (no true positives), as in sklearn. Per label,
    F1 = 2 tp / (gold count + predicted count), 0 when tp = 0 (sklearn's zero_division result).
    """
    gold = _gold(references)
    preds = [p.strip() for p in predictions]
    gold_counts, pred_counts = Counter(gold), Counter(preds)
    true_positives = Counter(g for g, p in zip(gold, preds) if g == p)
    labels = sorted(gold_counts.keys() | pred_counts.keys())
    scores = [2 * true_positives[label] / (gold_counts[label] + pred_counts[label]) for label in labels]
    return sum(scores) / len(scores)


def matthews_correlation(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Matthew-Correlation as CrossFit computes it (``get_matthews_corr``, written for glue-cola).

    Binarise: a prediction is positive when ``prediction.strip() == "acceptable"``, a gold label (first
    reference) when it equals ``"acceptable"`` exactly; everything else, "unacceptable" or any other string, is
    negative. Then the binary MCC of sklearn's ``matthews_corrcoef``:
    (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)), 0.0 when the denominator is 0 (all predictions, or all
    gold labels, on one side).
    """
    gold = [refs[0] == "acceptable" for refs in references]
    preds = [p.strip() == "acceptable" for p in predictions]
    tp = sum(g and p for g, p in zip(gold, preds))
    tn = sum(not g and not p for g, p in zip(gold, preds))
    fp = sum(p and not g for g, p in zip(gold, preds))
    fn = sum(g and not p for g, p in zip(gold, preds))
    denominator = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    if denominator == 0:
        return 0.0
    return (tp * tn - fp * fn) / math.sqrt(denominator)


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


#: The seven metrics CrossFit defines; :data:`METRICS` also holds the ones registered since.
BUILTIN_METRICS: tuple[str, ...] = tuple(METRICS)


def register_metric(name: str, function: Callable[[Sequence[str], Sequence[Sequence[str]]], float]) -> None:
    """Make ``function(predictions, references) -> float`` (references: one tuple of strings per example) usable
    as metric ``name`` everywhere a metric is named. A built-in name cannot be replaced.

    A run records the name only: a run scored with a metric registered in Python can be re-evaluated in a process
    that registers it again. The command line's ``--metric module:function`` imports the function itself, in
    every process that reads the run.
    """
    if name in BUILTIN_METRICS:
        raise ConfigError(f"metric {name!r} is built in; register yours under another name")
    if not callable(function):
        raise ConfigError(f"metric {name!r}: expected a callable (predictions, references) -> float")
    METRICS[name] = function


def resolve_metric(name: str) -> str:
    """``name`` if it is a known metric; a ``module:function`` path is imported and registered under that name.
    Raises ConfigError naming the metric and what was expected otherwise."""
    if name in METRICS:
        return name
    if ":" in name:
        import importlib

        module_name, _, attribute = name.partition(":")
        try:
            function = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"--metric {name}: cannot import {attribute!r} from module {module_name!r} ({exc})") from None
        register_metric(name, function)
        return name
    raise ConfigError(f"unknown metric {name!r}; expected one of {', '.join(METRICS)}, or module:function "
                      "(a Python callable (predictions, references) -> float)")


def compute_metric(name: str, predictions: Sequence[str], references: Sequence[Sequence[str] | str]) -> float:
    """Score predictions with a CrossFit metric.

    ``references`` holds one sequence of reference strings per example (a bare string counts as one reference).
    Raises ConfigError for an unknown metric name, ValueError for empty input, mismatched lengths, or an example
    without references.
    """
    name = resolve_metric(name)
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
    value = METRICS[name](list(predictions), refs)
    if name not in BUILTIN_METRICS:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"metric {name!r} returned {value!r:.80}; expected a number") from None
        if not math.isfinite(value):
            raise ConfigError(f"metric {name!r} returned {value}; expected a finite number")
    return value
