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


def test_rouge_l_lcs() -> None:
    # prediction: the cat was found under the bed (7 tokens); reference: the cat was under the bed (6);
    # LCS = "the cat was under the bed" = 6 -> P = 6/7, R = 1 -> F = 2 (6/7) / (13/7) = 12/13.
    assert rouge_l("The cat was found under the bed.", ["the cat was under the bed"]) == pytest.approx(12 / 13)
    # a b c d vs b d a: LCS "b d" = 2 -> P = 2/4, R = 2/3 -> F = 4/7.
    assert rouge_l("a b c d", ["b d a"]) == pytest.approx(4 / 7)


def test_rouge_l_tokens_empty_and_max() -> None:
    assert rouge_l("Hello, World!", ["hello world"]) == 1.0  # lower-cased alphanumeric tokens
    assert rouge_l("!!!", ["anything"]) == 0.0  # no tokens in the prediction
    assert rouge_l("", [""]) == 0.0
    assert rouge_l("x y", ["z", "x y z"]) == pytest.approx(0.8)  # max(0, F(P=1, R=2/3) = 4/5)


# ----------------------------------------------------------------------------------------------------------------
# Classification-F1


def test_classification_f1_invalid_prediction_adds_no_class() -> None:
    gold = refs("a", "a", "b", "b", "c")
    preds = ["a", "b", "b", "x", "c"]  # "x" is not a label
    # a: tp 1, fp 0, fn 1 -> 2/3 ; b: tp 1, fp 1 (example 2), fn 1 (example 4) -> 2/4 ; c: tp 1 -> 1.
    # macro over the gold labels {a, b, c}: (2/3 + 1/2 + 1) / 3 = 13/18 (adding "x" as a class would give 13/24).
    assert classification_f1(preds, gold) == pytest.approx(13 / 18)
    assert compute_metric("Classification-F1", preds, gold) == pytest.approx(13 / 18)


def test_classification_f1_uses_gold_labels_only() -> None:
    # Gold has only "pos"; predicting "neg" twice: pos tp 2, fn 2 -> F1 = 4/6 = 2/3; "neg" is not averaged.
    assert classification_f1(["pos", "neg", "pos", "neg"], refs("pos", "pos", "pos", "pos")) == pytest.approx(2 / 3)
    assert classification_f1([" pos "], refs("pos")) == 1.0  # surrounding whitespace ignored


# ----------------------------------------------------------------------------------------------------------------
# Matthew-Correlation


def test_mcc_binary_from_a_2x2_matrix() -> None:
    # positive "1": TP 6, TN 3, FP 1, FN 2.
    # MCC = (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (18 - 2) / sqrt(7 * 8 * 4 * 5) = 16 / sqrt(1120).
    gold = ["1"] * 6 + ["0"] * 3 + ["0"] + ["1"] * 2
    pred = ["1"] * 6 + ["0"] * 3 + ["1"] + ["0"] * 2
    assert matthews_correlation(pred, refs(*gold)) == pytest.approx(16 / math.sqrt(1120))


def test_mcc_multiclass_from_a_3x3_matrix() -> None:
    # rows = gold, columns = predicted, labels a b c:  [[3, 1, 0], [0, 2, 1], [1, 0, 2]].
    # s = 10, correct c = 7, gold counts t = (4, 3, 3), predicted counts p = (4, 3, 3).
    # MCC = (c s - sum p t) / sqrt((s^2 - sum p^2)(s^2 - sum t^2)) = (70 - 34) / sqrt(66 * 66) = 36/66 = 6/11.
    matrix = {("a", "a"): 3, ("a", "b"): 1, ("b", "b"): 2, ("b", "c"): 1, ("c", "a"): 1, ("c", "c"): 2}
    gold, pred = [], []
    for (g, p), count in matrix.items():
        gold += [g] * count
        pred += [p] * count
    assert matthews_correlation(pred, refs(*gold)) == pytest.approx(6 / 11)


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
    assert set(METRICS) == {
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
