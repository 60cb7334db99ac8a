"""CrossFit metrics on hand-worked cases; every expected value is derived in the comments."""

from __future__ import annotations

import logging
import math

import pytest

from taskspace.errors import ConfigError, DataError
from taskspace.tasks import METRICS, compute_metric
from taskspace.tasks.metrics import (
    accuracy,
    classification_f1,
    exact_match,
    matthews_correlation,
    normalize_answer,
    pearson_correlation,
    qa_f1,
    rouge_l,
)


def refs(*golds: str) -> list[tuple[str, ...]]:
    """One single-reference tuple per example."""
    return [(g,) for g in golds]


# ----------------------------------------------------------------------------------------------------------------
# EM / ACC


def test_normalize_answer() -> None:
    # lower-case -> "the  cat, sat!" ; punctuation gone -> "the  cat sat" ; article gone, spaces collapsed.
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    # "an" and "a" are words here, not the "a" inside "banana" / "Anna".
    assert normalize_answer("An apple, a banana and Anna") == "apple banana and anna"


def test_exact_match() -> None:
    assert exact_match("the Cat.", ["a cat"]) == 1.0  # both normalise to "cat"
    assert exact_match("cats", ["cat"]) == 0.0
    assert exact_match("Paris", ["London", "paris!"]) == 1.0  # max over references
    # Corpus EM: [1, 1, 0] -> 2/3.
    score = compute_metric("EM", ["Paris", "the Louvre", "x"], [("paris",), ("Louvre museum", "louvre"), ("y",)])
    assert score == pytest.approx(2 / 3)


def test_accuracy() -> None:
    assert accuracy("  Positive ", ["positive"]) == 1.0  # case and surrounding whitespace ignored
    assert accuracy("positive.", ["positive"]) == 0.0  # punctuation is not ignored (unlike EM)
    assert accuracy("the cat", ["cat"]) == 0.0  # neither are articles
    assert accuracy("no", ["yes", "No"]) == 1.0
    # [1, 0, 1, 1] -> 0.75
    assert compute_metric("ACC", ["a", "b", "c", "D"], refs("a", "x", "c", "d")) == pytest.approx(0.75)


# ----------------------------------------------------------------------------------------------------------------
# QA-F1


def test_qa_f1_precision_recall() -> None:
    # prediction tokens (normalised): cat sat on mat (4); reference: cat on hat (3); common: cat, on (2).
    # precision 2/4, recall 2/3 -> F1 = 2 * (1/2)(2/3) / (1/2 + 2/3) = (2/3) / (7/6) = 4/7.
    assert qa_f1("The cat sat on the mat", ["a cat on a hat"]) == pytest.approx(4 / 7)


def test_qa_f1_counts_repeated_tokens_once_per_match() -> None:
    # prediction: cat cat cat (3); reference: cat dog (2); common = min(3, 1) = 1.
    # precision 1/3, recall 1/2 -> F1 = 2 (1/6) / (5/6) = 2/5.
    assert qa_f1("cat cat cat", ["cat dog"]) == pytest.approx(2 / 5)


def test_qa_f1_empty_and_max() -> None:
    assert qa_f1("the", ["a"]) == 1.0  # both normalise to no tokens
    assert qa_f1("", ["x"]) == 0.0
    assert qa_f1("x", ["!!"]) == 0.0
    assert qa_f1("blue whale", ["whale shark", "blue whale"]) == 1.0  # max over references
    # Corpus: mean of 4/7 and 0 -> 2/7.
    assert compute_metric("QA-F1", ["cat sat on mat", "x"], refs("cat on hat", "y")) == pytest.approx(2 / 7)


# ----------------------------------------------------------------------------------------------------------------
# Rouge-L


def rouge_f(precision: float, recall: float) -> float:
    """rouge 1.0.1's F formula, which CrossFit's Rouge-L inherits: 2PR / (P + R + 1e-8)."""
    return 2 * precision * recall / (precision + recall + 1e-8)


def test_rouge_l_lcs() -> None:
    # Tokens are case-sensitive and counted as distinct tokens; the final "." only ends the one sentence.
    # prediction: The cat was found under the bed -> 7 distinct ("The" != "the");
    # reference: the cat was under the bed -> 5 distinct (the, cat, was, under, bed);
    # LCS = "cat was under the bed" -> 5 distinct -> P = 5/7, R = 5/5.
    assert rouge_l("The cat was found under the bed.", ["the cat was under the bed"]) == pytest.approx(
        rouge_f(5 / 7, 1), rel=1e-12
    )
    # a b c d vs b d a: LCS "b d" = 2 -> P = 2/4, R = 2/3 -> F ~ 4/7.
    assert rouge_l("a b c d", ["b d a"]) == pytest.approx(rouge_f(2 / 4, 2 / 3), rel=1e-12)
    # An exact match is not quite 1: 2 / (2 + 1e-8).
    assert rouge_l("the cat sat", ["the cat sat"]) == pytest.approx(1 - 5e-9, abs=1e-15)


def test_rouge_l_counts_distinct_tokens() -> None:
    # prediction: cat cat cat -> 1 distinct token; reference: cat dog -> 2; LCS "cat" -> P = 1/1, R = 1/2.
    assert rouge_l("cat cat cat", ["cat dog"]) == pytest.approx(rouge_f(1, 1 / 2), rel=1e-12)


def test_rouge_l_union_lcs_over_sentences() -> None:
    # Summary-level Rouge-L (sentences split on "."): reference r = w1 w2 w3 w4 w5 (5 distinct); candidate
    # c1 = w1 w2 w6 w7 w8, c2 = w1 w3 w8 w9 w5 (8 distinct in all). LCS(r, c1) = w1 w2, LCS(r, c2) = w1 w3 w5,
    # union {w1, w2, w3, w5} = 4 -> P = 4/8, R = 4/5.
    score = rouge_l("w1 w2 w6 w7 w8. w1 w3 w8 w9 w5", ["w1 w2 w3 w4 w5"])
    assert score == pytest.approx(rouge_f(4 / 8, 4 / 5), rel=1e-12)
    # Which LCS is taken matters: for reference sentence "a b" and prediction "b a" both {a} and {b} are LCSs;
    # the package's backtrack takes "b", and reference sentence "b" adds nothing new: union {b} = 1 of 2 -> F ~ 1/2
    # (taking "a" would give union {a, b} -> F ~ 1).
    assert rouge_l("b a", ["a b. b"]) == pytest.approx(rouge_f(1 / 2, 1 / 2), rel=1e-12)


def test_rouge_l_tokens_empty_and_max() -> None:
    # Case-sensitive, punctuation stays attached: Hello, / World! share no token with hello / world.
    assert rouge_l("Hello, World!", ["hello world"]) == 0.0
    assert rouge_l("Hello, World!", ["Hello, World!"]) == pytest.approx(1 - 5e-9, abs=1e-15)
    assert rouge_l("!!!", ["anything"]) == 0.0  # only punctuation: CrossFit scores 0 without calling rouge
    assert rouge_l("", [""]) == 0.0
    assert rouge_l(" ", ["a b"]) == 0.0  # whitespace is not removed, but shares no token with the reference
    assert rouge_l("x", ["..."]) == 0.0  # a reference without sentences (rouge raises) scores 0
    assert rouge_l("x y", ["z", "x y z"]) == pytest.approx(rouge_f(1, 2 / 3), rel=1e-12)  # max(0, ~4/5)


# ----------------------------------------------------------------------------------------------------------------
# Classification-F1


def test_classification_f1_invalid_prediction_adds_a_class() -> None:
    gold = refs("a", "a", "b", "b", "c")
    preds = ["a", "b", "b", "x", "c"]  # "x" is not a gold label
    # a: tp 1, fp 0, fn 1 -> 2/3 ; b: tp 1, fp 1 (example 2), fn 1 (example 4) -> 2/4 ; c: tp 1 -> 1 ;
    # x: tp 0, fp 1 -> 0. sklearn's macro F1 runs over gold and predicted labels {a, b, c, x}:
    # (2/3 + 1/2 + 1 + 0) / 4 = 13/24 (over the gold labels only it would be 13/18).
    assert classification_f1(preds, gold) == pytest.approx(13 / 24)
    assert compute_metric("Classification-F1", preds, gold) == pytest.approx(13 / 24)


def test_classification_f1_averages_over_gold_and_predicted_labels() -> None:
    # Gold has only "pos"; predicting "neg" twice: pos tp 2, fn 2 -> F1 = 4/6 = 2/3; neg tp 0, fp 2 -> F1 0.
    # Macro over {pos, neg}: (2/3 + 0) / 2 = 1/3.
    assert classification_f1(["pos", "neg", "pos", "neg"], refs("pos", "pos", "pos", "pos")) == pytest.approx(1 / 3)
    assert classification_f1([" pos "], refs("pos")) == 1.0  # surrounding whitespace ignored
    assert classification_f1(["Pos"], refs("pos")) == 0.0  # case is not: "Pos" is a class of its own


# ----------------------------------------------------------------------------------------------------------------
# Matthew-Correlation


def test_mcc_binary_from_a_2x2_matrix() -> None:
    # positive "acceptable": TP 6, TN 3, FP 1, FN 2.
    # MCC = (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (18 - 2) / sqrt(7 * 8 * 4 * 5) = 16 / sqrt(1120).
    yes, no = "acceptable", "unacceptable"
    gold = [yes] * 6 + [no] * 3 + [no] + [yes] * 2
    pred = [yes] * 6 + [no] * 3 + [yes] + [no] * 2
    assert matthews_correlation(pred, refs(*gold)) == pytest.approx(16 / math.sqrt(1120))


def test_mcc_binarises_on_acceptable() -> None:
    # CrossFit maps every label to acceptable (1) or not (0) before the MCC, so a three-label matrix collapses.
    # rows = gold, columns = predicted, labels acceptable / unacceptable / x:  [[3, 1, 0], [0, 2, 1], [1, 0, 2]].
    # TP = 3, FN = 1, FP = 1 (gold x, predicted acceptable), TN = 2 + 1 + 2 = 5:
    # MCC = (15 - 1) / sqrt(4 * 4 * 6 * 6) = 14/24 = 7/12 (the multi-class MCC of the 3x3 matrix would be 6/11).
    a, u, x = "acceptable", "unacceptable", "x"
    matrix = {(a, a): 3, (a, u): 1, (u, u): 2, (u, x): 1, (x, a): 1, (x, x): 2}
    gold, pred = [], []
    for (g, p), count in matrix.items():
        gold += [g] * count
        pred += [p] * count
    assert matthews_correlation(pred, refs(*gold)) == pytest.approx(7 / 12)
    # Predictions are stripped, gold labels are not (as in CrossFit); case matters.
    assert matthews_correlation([" acceptable ", "unacceptable"], refs(a, u)) == pytest.approx(1.0)
    assert matthews_correlation(["Acceptable", "unacceptable"], refs(a, u)) == 0.0  # no positive prediction
    assert matthews_correlation([a, u], refs(" acceptable", u)) == 0.0  # no positive gold label


def test_mcc_extremes_and_undefined() -> None:
    gold = refs("acceptable", "unacceptable", "acceptable", "unacceptable")
    assert matthews_correlation(["acceptable", "unacceptable"] * 2, gold) == pytest.approx(1.0)
    assert matthews_correlation(["unacceptable", "acceptable"] * 2, gold) == pytest.approx(-1.0)
    assert matthews_correlation(["acceptable"] * 4, gold) == 0.0  # all predictions identical: undefined -> 0
    assert compute_metric("Matthew-Correlation", ["x"] * 4, gold) == 0.0


# ----------------------------------------------------------------------------------------------------------------
# Pearson-Correlation


def test_pearson_of_specific_numbers() -> None:
    # x = 1 2 3 4 (mean 2.5), y = 2 4 5 9 (mean 5): dx = -1.5 -.5 .5 1.5, dy = -3 -1 0 4.
    # sxy = 4.5 + .5 + 0 + 6 = 11, sxx = 5, syy = 26 -> r = 11 / sqrt(130).
    score = pearson_correlation(["1", " 2", "3.0", "4e0"], refs("2", "4", "5", "9"))
    assert score == pytest.approx(11 / math.sqrt(130))


def test_pearson_unparseable_predictions_are_replaced_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    # "abc" -> mean of the parseable 1, 2, 4 = 7/3: x = 1 2 7/3 4 (mean 7/3), y = 1 2 3 4 (mean 5/2).
    # dx = -4/3 -1/3 0 5/3, dy = -3/2 -1/2 1/2 3/2: sxy = 2 + 1/6 + 0 + 5/2 = 14/3, sxx = 42/9 = 14/3, syy = 5.
    # r = (14/3) / sqrt(14/3 * 5) = sqrt(14/15).
    with caplog.at_level(logging.WARNING, logger="taskspace.tasks.metrics"):
        score = pearson_correlation(["1", "2", "abc", "4"], refs("1", "2", "3", "4"))
    assert score == pytest.approx(math.sqrt(14 / 15))
    assert "1 of 4 predictions are not numbers" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="taskspace.tasks.metrics"):
        assert pearson_correlation(["nan", "?", ""], refs("1", "2", "3")) == 0.0  # none parse: all 0 -> constant
    assert "3 of 3" in caplog.text


def test_pearson_constant_and_bad_references() -> None:
    assert pearson_correlation(["1", "2", "3"], refs("2", "2", "2")) == 0.0
    assert pearson_correlation(["5", "5", "5"], refs("1", "2", "3")) == 0.0
    assert pearson_correlation(["3", "2", "1"], refs("1", "2", "3")) == pytest.approx(-1.0)
    with pytest.raises(DataError, match="'high' of example 1 is not a number"):
        pearson_correlation(["1", "2"], refs("1", "high"))


# ----------------------------------------------------------------------------------------------------------------
# compute_metric


def test_metric_registry_names() -> None:
    from taskspace.tasks.metrics import BUILTIN_METRICS

    assert set(BUILTIN_METRICS) <= set(METRICS)
    assert set(BUILTIN_METRICS) == {
        "EM", "ACC", "QA-F1", "Classification-F1", "Rouge-L", "Matthew-Correlation", "Pearson-Correlation",
    }  # fmt: skip


def test_compute_metric_errors() -> None:
    with pytest.raises(ConfigError, match="unknown metric 'F1'.*Classification-F1"):
        compute_metric("F1", ["a"], refs("a"))
    with pytest.raises(ValueError, match="3 predictions but 2 reference lists"):
        compute_metric("ACC", ["a", "b", "c"], refs("a", "b"))
    with pytest.raises(ValueError, match="0 predictions and 0 reference lists"):
        compute_metric("EM", [], [])
    with pytest.raises(ValueError, match="no reference"):
        compute_metric("EM", ["a"], [()])


def test_compute_metric_accepts_bare_reference_strings() -> None:
    # A bare string is one reference, not a sequence of one-character references.
    assert compute_metric("ACC", ["ab", "c"], ["ab", "x"]) == 0.5
