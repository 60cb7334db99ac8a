"""When a generated answer's score is settled before the answer is finished.

Greedy generation runs until EOS or ``max_output_length`` tokens. For the metrics that score each example by
whether its answer *equals* a reference after normalisation (EM, ACC; Matthew-Correlation, whose only positive
answer is ``acceptable``), the example's score is settled at 0 as soon as what has been generated can no longer
be the beginning of any reference: no continuation can make it match. :func:`settled_check` gives, for such a
metric, the test ``settled(text_so_far, references) -> bool`` that generation uses to let the example leave its
batch early (:meth:`taskspace.backbones.Backbone.predict` with ``settle``); the score is the one full generation
gives, only the answer's text stops where its score was decided.

The test is conservative, so that it never settles an answer that could still match:

- the comparison ignores all whitespace (a later token can only add text, and a tokenizer's clean-up of spaces
  before punctuation only removes spaces), so ``text_so_far`` must fail to be a prefix of every reference even
  with spaces removed;
- trailing U+FFFD characters (the bytes of a character not yet complete) are ignored;
- for EM, whose normalisation removes whole words (the articles), only the text up to the last character that
  ends a word counts: the last word may still grow;
- a text holding a capital sigma (whose lower case depends on the next letter) is never settled.

Classification-F1 is not settled early: the macro average runs over every distinct predicted label, so two
wrong answers that differ only after the point where each became wrong count as two classes, and cutting them
short could merge them. QA-F1, Rouge-L and Pearson-Correlation score partial overlaps and numbers: no prefix
settles them. A metric registered by the user is not settled either.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from .metrics import _ARTICLES, _PUNCTUATION, normalize_answer

__all__ = ["settled_check", "SETTLED_METRICS"]

_LAST_WORD = re.compile(r"\w*$")


def _squeeze(text: str) -> str:
    return "".join(text.split())


def _unsure(text: str) -> bool:
    return "\u03a3" in text


def _settled_acc(text: str, references: Sequence[str]) -> bool:
    text = text.rstrip("\ufffd")
    if _unsure(text):
        return False
    key = _squeeze(text.lower())
    return bool(key) and not any(_squeeze(ref.lower()).startswith(key) for ref in references)


def _settled_em(text: str, references: Sequence[str]) -> bool:
    text = text.rstrip("\ufffd")
    if _unsure(text):
        return False
    stripped = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    stable = stripped[: _LAST_WORD.search(stripped).start()]  # up to the last character that ends a word
    key = _squeeze(_ARTICLES.sub(" ", stable))
    return bool(key) and not any(_squeeze(normalize_answer(ref)).startswith(key) for ref in references)


def _settled_matthews(text: str, references: Sequence[str]) -> bool:
    key = _squeeze(text.rstrip("\ufffd"))
    return bool(key) and not "acceptable".startswith(key)


#: metric name -> settled(text_so_far, references) for the metrics whose score a prefix can settle.
SETTLED_METRICS: dict[str, Callable[[str, Sequence[str]], bool]] = {
    "EM": _settled_em,
    "ACC": _settled_acc,
    "Matthew-Correlation": _settled_matthews,
}


def settled_check(metric: str) -> Callable[[str, Sequence[str]], bool] | None:
    """The test that tells when an answer's score under ``metric`` can no longer change (see the module's
    docstring), or None when ``metric`` has none (generation then runs to EOS or ``max_output_length``)."""
    return SETTLED_METRICS.get(metric)
