"""Class labels of your own data: an output column of a few values becomes the task's options.

A CSV whose ``label`` column holds ``good`` / ``bad`` (or ``0`` / ``1``) is classification, yet read as it is its
answers are free text: scored by EM, out of reach of ``--decode rank`` and of option-based metrics. As ``datasets``'
``ClassLabel`` names a column's classes, a task of your own whose examples carry no options gets the distinct
train outputs as every example's options when they look like class labels (:func:`class_labels` says when), and
taskspace says so once. ``--no-infer-options`` (``Columns.infer_options``) or an ``--options-column`` keeps the
outputs as they are.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace

from taskspace.tasks.example import Example

__all__ = ["MAX_CLASS_LABELS", "class_labels", "with_class_labels"]

#: At most this many distinct outputs become options: more are rarely labels, and each option costs a forward
#: pass when ranked.
MAX_CLASS_LABELS = 20

_INTEGER = re.compile(r"-?\d+")

logger = logging.getLogger(__name__)


def _label_order(label: str) -> tuple:
    """Sort key: integers by value (``2`` before ``10``), then every other label as a string."""
    return (0, int(label), label) if _INTEGER.fullmatch(label) else (1, 0, label)


def class_labels(splits: Mapping[str, Sequence[Example]]) -> tuple[str, ...] | None:
    """The options the outputs of ``splits`` (train, dev, optionally test) stand for, or None when they are not
    class labels.

    They are class labels when no example has options and each has one reference, the train split has at least 2
    and at most :data:`MAX_CLASS_LABELS` distinct outputs and at most half as many as it has examples (a label
    recurs, on average at least twice), and every dev and test output is one of them. The labels are sorted
    (integers by value, the rest as strings, as ``datasets``' ``class_encode_column`` sorts), so that neither the
    order of the rows nor a reshuffled train file changes them.
    """
    examples = [e for split in splits.values() for e in split]
    if any(e.options or len(e.references) != 1 for e in examples):
        return None
    train = splits["train"]
    labels = {e.target for e in train}
    if not 2 <= len(labels) <= min(MAX_CLASS_LABELS, len(train) // 2):
        return None
    if any(e.target not in labels for e in examples):
        return None
    return tuple(sorted(labels, key=_label_order))


def with_class_labels(task: str, splits: dict[str, list[Example]], sources: dict[str, str]
                      ) -> tuple[dict[str, list[Example]], tuple[str, ...]]:
    """``splits`` with the class labels (:func:`class_labels`) as every example's options, and the labels; said
    once through ``logging`` and recorded in ``sources["options"]``. Unchanged, with no labels, when the outputs
    are not class labels."""
    labels = class_labels(splits)
    if labels is None:
        return splits, ()
    shown = ", ".join(labels)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    sources["options"] = (f"inferred: the {len(labels)} distinct train outputs ({shown}), as every dev and test "
                          "output is one of them; --no-infer-options keeps the outputs free text")
    logger.warning("task %s: its %d distinct outputs (%s) are its options; --no-infer-options keeps them free text",
                   task, len(labels), shown)
    return {split: [replace(e, options=labels) for e in examples] for split, examples in splits.items()}, labels
