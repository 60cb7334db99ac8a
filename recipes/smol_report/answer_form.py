"""A task's answer form, read from its training examples, and the nearest tasks by answer form: what the report's
failure analysis sets beside an unseen task that a subspace does not reach (an answer form that no training task
shares is one reason it may not).

The features, from the training examples' targets (each example's first reference, the answer it is trained on),
all deterministic:

- ``kind``: ``labels`` when every example has the same options (a label set), ``choices`` when examples have options
  of their own (multiple choice); without options, free text: ``numbers`` when at least half the answers are numbers
  (digits with an optional sign, thousands commas, decimals and per cent: "1978", "-4.5", "25%"), else
  ``sentences`` when the median answer has :data:`SENTENCE_WORDS` words or more, else ``entities``;
- ``n_options``: the number of labels, or the median number of choices per example (0 for free text); ``options``:
  the labels, or the first example's choices;
- ``median_words``: the median number of words of an answer, a word being a run of letters, digits or underscores;
- ``vocabulary``: the set of the answers' words, lower-cased; for ``labels``, the words of the labels (every answer
  the task can have, whether or not a few-shot file draws each).

Distance, compared in this order (a lexicographic key, the task's name last so that ties are broken the same way
every time): a different kind, then less overlap of the answer vocabularies (Jaccard: shared words over all words),
then the difference of median answer lengths, then the difference of the numbers of options.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Sequence

from taskspace.errors import DataError
from taskspace.tasks import Example, load_task

#: A free-text answer of at least this many words (median) makes the task's answers sentences.
SENTENCE_WORDS = 6

_WORD = re.compile(r"\w+")
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?%?")


@dataclass(frozen=True)
class AnswerForm:
    """The answer form of one task (see the module docstring for each feature)."""

    task: str
    kind: str
    n_options: float
    options: tuple[str, ...]
    median_words: float
    vocabulary: frozenset[str]

    @property
    def free_text(self) -> bool:
        return self.kind not in ("labels", "choices")

    def describe(self, shown: int = 4, width: int = 24) -> str:
        """One line: the kind and, for options, how many and the first ``shown`` (each cut to ``width``
        characters); for free text, the median answer length."""
        if self.free_text:
            return f"free text, {self.kind}, median {self.median_words:g} word{'' if self.median_words == 1 else 's'}"
        cut = [o if len(o) <= width else o[: width - 1] + "…" for o in self.options[:shown]]
        listed = "; ".join(cut) + ("; …" if len(self.options) > shown else "")
        if self.kind == "labels":
            return f"{self.n_options:g} labels: {listed}"
        return f"choices, {self.n_options:g} per example, e.g. {listed}"


def words(text: str) -> list[str]:
    """The words of ``text``, lower-cased."""
    return _WORD.findall(text.lower())


def answer_form(task: str, examples: Sequence[Example]) -> AnswerForm:
    """The answer form of ``task`` from its training ``examples``."""
    if not examples:
        raise DataError(f"task {task!r}: no training examples to read its answer form from")
    targets = [e.target for e in examples]
    lengths = [len(words(t)) for t in targets]
    vocabulary = frozenset(w for t in targets for w in words(t))
    if all(e.options for e in examples):
        options = examples[0].options
        if all(e.options == options for e in examples):
            return AnswerForm(task, "labels", len(options), options, median(lengths),
                              frozenset(w for o in options for w in words(o)))
        return AnswerForm(task, "choices", median([len(e.options) for e in examples]), options, median(lengths),
                          vocabulary)
    if 2 * sum(bool(_NUMBER.fullmatch(t.strip())) for t in targets) >= len(targets):
        kind = "numbers"
    else:
        kind = "sentences" if median(lengths) >= SENTENCE_WORDS else "entities"
    return AnswerForm(task, kind, 0, (), median(lengths), vocabulary)


def load_answer_form(task: str, data_dir: str | Path, data_seed: int) -> AnswerForm:
    """The answer form of ``task`` from the training file of ``data_seed`` in ``data_dir`` (what its runs trained
    on)."""
    return answer_form(task, load_task(task, data_dir, seed=data_seed).train)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Shared words over all words of two vocabularies (0 when both are empty)."""
    union = a | b
    return len(a & b) / len(union) if union else 0.0


def distance(a: AnswerForm, b: AnswerForm) -> tuple:
    """The key by which ``b`` is near ``a``: smaller is nearer (see the module docstring)."""
    return (a.kind != b.kind, -jaccard(a.vocabulary, b.vocabulary), abs(a.median_words - b.median_words),
            abs(a.n_options - b.n_options), b.task)


def nearest(form: AnswerForm, candidates: Sequence[AnswerForm], k: int = 3) -> list[AnswerForm]:
    """The ``k`` candidates nearest ``form`` by answer form (``form``'s own task left out), nearest first."""
    return sorted((c for c in candidates if c.task != form.task), key=lambda c: distance(form, c))[:k]
