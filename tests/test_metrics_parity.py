"""Rouge-L, Classification-F1 and Matthew-Correlation agree with what CrossFit's evaluation code computes.

CrossFit (INK-USC/CrossFit, dataloader/metrics.py) scores these three metrics with packages: Rouge-L with the
``rouge==1.0.1`` package (0.0 for a prediction that is empty once punctuation is removed, max over references),
Classification-F1 with sklearn's macro ``f1_score``, Matthew-Correlation with sklearn's ``matthews_corrcoef`` on
labels binarised to "acceptable" or not. The oracles below make those calls; taskspace's own implementations
must agree with them to 1e-9 on hand-made cases, on seeded random cases and on perturbed references of real tasks.
"""

from __future__ import annotations

import random
import string
import warnings
from collections.abc import Sequence
from pathlib import Path

import pytest
from rouge import Rouge
from sklearn.metrics import f1_score, matthews_corrcoef

from taskspace.tasks import compute_metric, load_task
from taskspace.tasks.metrics import classification_f1, matthews_correlation, rouge_l

TOLERANCE = 1e-9
SEEDS = (100, 13, 21, 42, 87)


# ----------------------------------------------------------------------------------------------------------------
# Oracles: the package calls CrossFit makes.


def crossfit_rouge_l(prediction: str, references: Sequence[str]) -> float:
    if not "".join(ch for ch in prediction if ch not in string.punctuation):
        return 0.0
    return max(Rouge().get_scores(prediction, ref)[0]["rouge-l"]["f"] for ref in references)


def sklearn_classification_f1(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    # taskspace strips surrounding whitespace from both sides; CrossFit's call is otherwise this one.
    gold = [refs[0].strip() for refs in references]
    preds = [p.strip() for p in predictions]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UndefinedMetricWarning: zero_division="warn" scores the label 0
        return float(f1_score(gold, preds, average="macro"))


def sklearn_matthews(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    gold = [1.0 if refs[0] == "acceptable" else 0.0 for refs in references]
    preds = [1.0 if p.strip() == "acceptable" else 0.0 for p in predictions]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(matthews_corrcoef(gold, preds))


def refs(*golds: str) -> list[tuple[str, ...]]:
    return [(g,) for g in golds]


# ----------------------------------------------------------------------------------------------------------------
# Rouge-L: hand-made cases


ROUGE_CASES: list[tuple[str, list[str]]] = [
    ("Hello, World!", ["hello world"]),  # case and attached punctuation: 0.0 for rouge
    ("Hello, World!", ["Hello, World!"]),
    ("The Cat sat.", ["the cat sat"]),
    ("the cat sat", ["The cat sat on the mat."]),
    ("The cat was found under the bed.", ["the cat was under the bed"]),
    ("the cat. the mat", ["the cat sat on the mat"]),  # two prediction sentences
    ("w1 w2 w6 w7 w8. w1 w3 w8 w9 w5", ["w1 w2 w3 w4 w5"]),  # union LCS
    ("the cat sat. on the mat. today", ["the cat. sat on the mat today. it rained"]),
    ("b a", ["a b. b"]),  # which of two LCSs the backtrack takes matters
    ("a b a b", ["b a b a. a"]),
    ("cat cat cat", ["cat dog"]),  # repeated tokens: distinct counts
    ("the the the cat", ["the cat the cat"]),
    ("a..b", ["a b"]),
    ("U.S. troops left", ["US troops left"]),
    ("end.", ["end."]),
    ("x y", ["z", "x y z"]),  # max over references
    ("Paris is nice", ["Rome", "paris is nice", "Paris is nice."]),
    ("Paris is nice", ["paris IS nice", "Nice is Paris"]),
    ("", ["x"]),  # empty prediction
    ("...", ["x"]),
    ("!?,", ["x y"]),
    ("  ", ["a. ."]),  # whitespace survives CrossFit's punctuation filter; "a. ." has an empty-token sentence
    (" ", ["a b"]),
    (". .", ["a. . b"]),
    ("\tthe\ncat  sat ", ["the cat\tsat"]),
]


@pytest.mark.parametrize(("prediction", "references"), ROUGE_CASES)
def test_rouge_l_matches_rouge_package_on_hand_made_cases(prediction: str, references: list[str]) -> None:
    assert rouge_l(prediction, references) == pytest.approx(crossfit_rouge_l(prediction, references), abs=TOLERANCE)


def test_rouge_l_hand_made_values() -> None:
    assert crossfit_rouge_l("Hello, World!", ["hello world"]) == 0.0
    assert rouge_l("Hello, World!", ["hello world"]) == 0.0
    assert rouge_l("", ["x"]) == 0.0
    assert rouge_l("b a", ["a b. b"]) == pytest.approx(0.5, abs=1e-8)


# ----------------------------------------------------------------------------------------------------------------
# Rouge-L: seeded random cases

VOCABULARY = [
    "the", "The", "THE", "cat", "Cat", "cat.", "sat", "on", "mat", "mat,", "Hello,", "hello", "world", "World!",
    "a", "A", "dog", "dog?", ",", "!", "?", "-", "it's", "'", "(b)", "x", "y",
]  # fmt: skip
SEPARATORS = [" ", " ", " ", " ", "  ", ". ", ".", " . ", "\t", "\n", "..", ". . "]


def random_text(rng: random.Random, min_tokens: int, max_tokens: int) -> str:
    tokens = [rng.choice(VOCABULARY) for _ in range(rng.randint(min_tokens, max_tokens))]
    text = ""
    for i, token in enumerate(tokens):
        text += (rng.choice(SEPARATORS) if i else "") + token
    if rng.random() < 0.2:
        text += rng.choice([".", " ", ". ", "!"])
    if rng.random() < 0.1:
        text = rng.choice(SEPARATORS) + text
    return text


def random_rouge_cases(count: int, seed: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        draw = rng.random()
        if draw < 0.05:
            prediction = rng.choice(["", ".", "!!", " ", ". ", "?."])
        else:
            prediction = random_text(rng, 1, 14)
        references = [random_text(rng, 1, 14) for _ in range(rng.randint(1, 3))]
        if draw > 0.85:  # a prediction close to a reference: a different case or a dropped token
            words = references[0].split(" ")
            prediction = " ".join(w.lower() if rng.random() < 0.3 else w for w in words if rng.random() < 0.8)
        cases.append((prediction, references))
    return cases


def test_rouge_l_matches_rouge_package_on_random_cases() -> None:
    cases = random_rouge_cases(400, seed=0)
    mismatches = [
        (prediction, references, rouge_l(prediction, references), crossfit_rouge_l(prediction, references))
        for prediction, references in cases
        if abs(rouge_l(prediction, references) - crossfit_rouge_l(prediction, references)) > TOLERANCE
    ]
    assert not mismatches, f"{len(mismatches)} of {len(cases)} differ, first: {mismatches[0]}"
    # The cases exercise more than zeros and exact matches.
    scores = [crossfit_rouge_l(p, r) for p, r in cases]
    assert sum(0.05 < s < 0.95 for s in scores) > 200
    assert sum(s == 0.0 for s in scores) > 10


# ----------------------------------------------------------------------------------------------------------------
# Classification-F1 and Matthew-Correlation: hand-made and seeded random cases

F1_CASES = [
    (["a", "b", "b", "x", "c"], refs("a", "a", "b", "b", "c")),  # "x" adds a class
    (["pos", "neg", "pos", "neg"], refs("pos", "pos", "pos", "pos")),
    (["pos"] * 4, refs("pos", "neg", "pos", "neg")),  # a gold label never predicted
    ([" pos ", "neg\n", "Pos", "NEG"], refs("pos", "neg", "pos", "neg")),
    (["z", "z", "z"], refs("a", "b", "c")),
    (["a", "b", "c"], refs("a", "b", "c")),
]

MCC_CASES = [
    (["acceptable", "unacceptable"] * 2, refs("acceptable", "unacceptable", "acceptable", "unacceptable")),
    (["unacceptable", "acceptable"] * 2, refs("acceptable", "unacceptable", "acceptable", "unacceptable")),
    (["acceptable"] * 4, refs("acceptable", "unacceptable", "acceptable", "unacceptable")),
    (["x", "y", "acceptable", "z"], refs("acceptable", "unacceptable", "acceptable", "x")),
    ([" acceptable ", "Acceptable", "yes", "unacceptable"], refs("acceptable", "acceptable", "unacceptable", "no")),
    (["acceptable", "unacceptable", "acceptable"], refs(" acceptable", "unacceptable", "acceptable")),
    (["a", "b", "c", "a", "b", "c", "acceptable"], refs("a", "b", "c", "b", "c", "a", "acceptable")),
]


@pytest.mark.parametrize(("predictions", "references"), F1_CASES)
def test_classification_f1_matches_sklearn_on_hand_made_cases(predictions, references) -> None:
    expected = sklearn_classification_f1(predictions, references)
    assert classification_f1(predictions, references) == pytest.approx(expected, abs=TOLERANCE)
    assert compute_metric("Classification-F1", predictions, references) == pytest.approx(expected, abs=TOLERANCE)


@pytest.mark.parametrize(("predictions", "references"), MCC_CASES)
def test_matthews_correlation_matches_sklearn_on_hand_made_cases(predictions, references) -> None:
    expected = sklearn_matthews(predictions, references)
    assert matthews_correlation(predictions, references) == pytest.approx(expected, abs=TOLERANCE)
    assert compute_metric("Matthew-Correlation", predictions, references) == pytest.approx(expected, abs=TOLERANCE)


def random_label_cases(
    count: int, seed: int, gold_labels: list[str], extra_predictions: list[str]
) -> list[tuple[list[str], list[tuple[str, ...]]]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        size = rng.randint(1, 40)
        labels = rng.sample(gold_labels, rng.randint(1, len(gold_labels)))
        gold = [rng.choice(labels) for _ in range(size)]
        wrong = rng.random()  # how often a prediction is not the gold label
        predictions = [g if rng.random() > wrong else rng.choice(gold_labels + extra_predictions) for g in gold]
        cases.append((predictions, refs(*gold)))
    return cases


def test_classification_f1_matches_sklearn_on_random_cases() -> None:
    cases = random_label_cases(300, 1, ["pos", "neg", "neutral", "mixed", "Sci/Tech"], ["x", "Pos", " neg ", "none"])
    for predictions, references in cases:
        expected = sklearn_classification_f1(predictions, references)
        assert classification_f1(predictions, references) == pytest.approx(expected, abs=TOLERANCE), (
            predictions,
            references,
        )


def test_matthews_correlation_matches_sklearn_on_random_cases() -> None:
    cases = random_label_cases(
        300, 2, ["acceptable", "unacceptable"], ["x", "Acceptable", " acceptable ", "acceptable.", ""]
    )
    cases += random_label_cases(100, 3, ["acceptable", "unacceptable", "other"], ["x", " acceptable"])
    for predictions, references in cases:
        expected = sklearn_matthews(predictions, references)
        assert matthews_correlation(predictions, references) == pytest.approx(expected, abs=TOLERANCE), (
            predictions,
            references,
        )


# ----------------------------------------------------------------------------------------------------------------
# Real tasks: perturbed references as predictions


def xsum_examples(data_dir: Path):
    examples = []
    for seed in SEEDS:
        task = load_task("xsum", data_dir, seed=seed)
        assert task.metric == "Rouge-L"
        examples += task.train + task.dev
    return examples


def perturb_summary(index: int, reference: str, other: str, source: str) -> list[str]:
    words = reference.split()
    return [
        reference,
        reference.lower(),
        reference.upper(),
        " ".join(words[: max(1, len(words) // 2)]),  # truncated
        " ".join(words[len(words) // 3 :]),
        other,  # another example's answer
        reference + " " + other,  # two sentences
        "".join(ch for ch in reference if ch not in string.punctuation),
        reference.replace(",", " ,").replace(".", " ."),
        " ".join(reversed(words)),
        source.removeprefix("summarize: ")[: 200 + 40 * (index % 5)],  # a lead of the article
        ["", ".", " "][index % 3],  # empty generations
    ]


def test_rouge_l_matches_rouge_package_on_xsum(data_dir: Path) -> None:
    examples = xsum_examples(data_dir)
    assert len(examples) >= 100
    references = [e.references[0] for e in examples]
    for kind in range(12):
        predictions, reference_lists = [], []
        for i, example in enumerate(examples):
            other = references[(i + 7) % len(references)]
            predictions.append(perturb_summary(i, references[i], other, example.input)[kind])
            # every third example gets a second reference: the max over references
            reference_lists.append(example.references + ((other,) if i % 3 == 0 else ()))
        expected = [crossfit_rouge_l(p, r) for p, r in zip(predictions, reference_lists)]
        for prediction, refs_, want in zip(predictions, reference_lists, expected):
            assert rouge_l(prediction, refs_) == pytest.approx(want, abs=TOLERANCE), (kind, prediction, refs_)
        corpus = compute_metric("Rouge-L", predictions, reference_lists)
        assert corpus == pytest.approx(sum(expected) / len(expected), abs=TOLERANCE)


def perturb_labels(gold: list[str], labels: list[str]) -> list[str]:
    predictions = []
    for i, g in enumerate(gold):
        if i % 5 == 0:
            prediction = labels[(labels.index(g) + 1) % len(labels)]  # swapped to the next label
        elif i % 7 == 1:
            prediction = gold[(i + 3) % len(gold)]  # another example's answer
        elif i % 11 == 2:
            prediction = "not a label"
        elif i % 13 == 3:
            prediction = g.upper() if g.upper() != g else g.lower()  # changed case
        elif i % 17 == 4:
            prediction = f"  {g}\n"  # surrounding whitespace
        elif i % 19 == 5:
            prediction = g[: max(1, len(g) // 2)]  # truncated
        else:
            prediction = g
        predictions.append(prediction)
    return predictions


@pytest.mark.parametrize("name", ["emotion", "trec-finegrained", "circa", "ethos-race"])
def test_classification_f1_matches_sklearn_on_real_labels(data_dir: Path, name: str) -> None:
    task = load_task(name, data_dir)
    assert task.metric == "Classification-F1"
    examples = task.test + task.dev + task.train
    references = [e.references for e in examples]
    gold = [r[0] for r in references]
    labels = sorted(set(gold))
    for predictions in (
        perturb_labels(gold, labels),
        [labels[0]] * len(gold),  # one label predicted for everything
        gold[1:] + gold[:1],  # every example gets its neighbour's answer
    ):
        expected = sklearn_classification_f1(predictions, references)
        assert compute_metric("Classification-F1", predictions, references) == pytest.approx(expected, abs=TOLERANCE)


def test_matthews_correlation_matches_sklearn_on_glue_cola(data_dir: Path) -> None:
    task = load_task("glue-cola", data_dir)
    assert task.metric == "Matthew-Correlation"
    examples = task.test + task.dev + task.train
    references = [e.references for e in examples]
    gold = [r[0] for r in references]
    assert set(gold) == {"acceptable", "unacceptable"}
    for predictions in (
        perturb_labels(gold, ["acceptable", "unacceptable"]),
        ["yes" if i % 3 else g for i, g in enumerate(gold)],  # invalid labels count as "not acceptable"
        ["unacceptable"] * len(gold),  # constant: MCC undefined -> 0.0
        gold[1:] + gold[:1],
    ):
        expected = sklearn_matthews(predictions, references)
        assert compute_metric("Matthew-Correlation", predictions, references) == pytest.approx(expected, abs=TOLERANCE)
