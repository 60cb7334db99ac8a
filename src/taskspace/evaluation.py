"""Evaluation: a backbone (with a delta bound, or frozen) answers examples, and the task's metric scores the answers.

Whether answers are generated or chosen among options is the backbone's ``decode`` setting; this module only
batches, binds and scores. Test splits can be capped at a seeded random subset (:func:`capped_test_split`).
"""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path
from typing import Mapping, Sequence

import torch

from .backbones import Backbone
from .deltas import DeltaMethod
from .store import write_text
from .tasks import Example, Task, compute_metric
from .tasks.settled import settled_check


def predict(backbone: Backbone, examples: Sequence[Example], *, method: DeltaMethod | None = None,
            theta: torch.Tensor | None = None, batch_size: int = 32, progress: bool = False,
            desc: str = "predict", settle=None) -> list[str]:
    """Predictions for ``examples`` under ``method`` bound to ``theta`` (the frozen backbone if no method);
    ``progress`` shows a bar of the examples answered (on stderr), named ``desc``; ``settle``: see
    :meth:`Backbone.predict <taskspace.backbones.Backbone.predict>`."""
    from tqdm.auto import tqdm

    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input))  # less padding per batch
    out: list[str] = [""] * len(examples)
    bound = method.bind(theta) if method is not None else contextlib.nullcontext()
    was_training = backbone.training
    backbone.eval()
    bar = tqdm(total=len(examples), disable=not progress, desc=desc, unit="ex", leave=False)
    try:
        with torch.no_grad(), bound:
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                for i, p in zip(idx, backbone.predict(backbone.collate([examples[j] for j in idx]), settle)):
                    out[i] = p
                bar.update(len(idx))
    finally:
        bar.close()
        backbone.train(was_training)
    return out


def score(metric: str, examples: Sequence[Example], predictions: Sequence[str]) -> float:
    return compute_metric(metric, predictions, [e.references for e in examples])


def evaluate(backbone: Backbone, examples: Sequence[Example], metric: str, *, method: DeltaMethod | None = None,
             theta: torch.Tensor | None = None, batch_size: int = 32, progress: bool = False,
             desc: str = "evaluate", settle: bool = False) -> tuple[float, list[str]]:
    """The metric's score of ``examples`` and the predictions it was computed from. With ``settle``, an answer
    stops being generated once no continuation can change its score (:mod:`taskspace.tasks.settled`, for the
    metrics where that can be known): the score is the same, the predictions may be cut short, so use it where
    only the score is kept."""
    preds = predict(backbone, examples, method=method, theta=theta, batch_size=batch_size, progress=progress,
                    desc=desc, settle=settled_check(metric) if settle else None)
    return score(metric, examples, preds), preds


def evaluate_splits(backbone: Backbone, splits: Mapping[str, Sequence[Example]], metric: str, *,
                    method: DeltaMethod | None = None, theta: torch.Tensor | None = None,
                    batch_size: int = 32, progress: bool = False) -> dict[str, float | None]:
    """``{split: score}`` for each named split (None for an empty one); answers stop once their scores are
    settled (only the scores are kept)."""
    return {name: evaluate(backbone, examples, metric, method=method, theta=theta, batch_size=batch_size,
                           progress=progress, desc=name, settle=True)[0]
            if examples else None for name, examples in splits.items()}


def capped_test_split(task: Task, limit: int | None, seed: int) -> list[Example]:
    """At most ``limit`` test examples, a seeded random subset kept in file order (test files can be sorted)."""
    if limit is None or len(task.test) <= limit:
        return list(task.test)
    keep = sorted(random.Random(seed).sample(range(len(task.test)), limit))
    return [task.test[i] for i in keep]


def write_predictions(path: Path, examples: Sequence[Example], predictions: Sequence[str]) -> None:
    """One JSON line per example: input, prediction, references (written atomically, as every artefact is)."""
    write_text(path, "".join(json.dumps({"input": e.input, "prediction": p, "references": list(e.references)}) + "\n"
                             for e, p in zip(examples, predictions)))
