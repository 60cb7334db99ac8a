"""Pooling the few-shot files of a task and drawing new CrossFit-style train / dev splits from the pool.

The shared data hold 16 examples per split, drawn at random (not CrossFit's 16 per class); the five seeds'
train and dev files together hold about 160 distinct examples per task. :func:`pool_examples` collects them and
:func:`resample` draws CrossFit's splits: k examples *per label* for tasks with a fixed label set, k in total
otherwise.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from taskspace.errors import ConfigError, DataError
from taskspace.tasks.catalog import CATALOG
from taskspace.tasks.example import Example
from taskspace.tasks.files import task_files
from taskspace.tasks.formats import read_examples

__all__ = ["DEFAULT_SEEDS", "example_key", "pool_examples", "resample"]

#: The seeds of the shared few-shot files (CrossFit's).
DEFAULT_SEEDS: tuple[int, ...] = (100, 13, 21, 42, 87)
_MAX_SHOWN = 10  # short labels named in an error message


def example_key(example: Example) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """What makes two examples of a task the same one: input, references and options."""
    return example.input, example.references, example.options


def pool_examples(
    data_dir: str | Path, task: str, k: int = 16, seeds: Iterable[int] = DEFAULT_SEEDS
) -> list[Example]:
    """The distinct train and dev examples of the given seeds' few-shot files of a task.

    Files are found by :func:`taskspace.tasks.files.task_files` (either layout; TSV files get the catalog's
    fixed labels). Examples count as the same when input, references and options agree; the pool is sorted by
    (input, references, options), so it depends neither on file-system order nor on the order of ``seeds``.
    Every example carries ``task``. Raises DataError when a seed's train or dev file is missing.
    """
    info = CATALOG.get(task)
    labels = info.labels if info is not None and info.labels else None
    parse_options = info.has_options if info is not None else True
    unique: dict[tuple, Example] = {}
    for seed in seeds:
        files = task_files(data_dir, task, k, seed)
        for split in ("train", "dev"):
            for example in read_examples(files[split], task, labels, parse_options=parse_options):
                unique.setdefault(example_key(example), example)
    return [unique[key] for key in sorted(unique)]


def resample(
    examples: Sequence[Example],
    k: int,
    seed: int,
    labels: Sequence[str] | None = None,
    *,
    task: str | None = None,
) -> tuple[list[Example], list[Example]]:
    """Draw a CrossFit-style (train, dev) pair from a pool of examples.

    The pool is shuffled with ``random.Random(seed)``. With ``labels`` (a fixed label set, such as the catalog's
    ``TaskInfo.labels``) train takes the first k examples of each label in shuffled order and dev the next k of
    each label: k per class, as CrossFit does for classification. Without labels, train is the first k examples
    and dev the next k: k in total. Tasks with per-example answer choices (multiple-choice QA) belong to the second
    case: their options are not classes, so pass no labels for them. The label of an example is its first
    reference. Within train and dev, examples keep their shuffled order (labels interleaved).

    The same pool, k, seed and labels always give the same splits; train and dev are disjoint whenever the pool
    holds no duplicates. Raises DataError, naming the task, the short labels and their counts and suggesting a
    k that fits, when there are fewer than 2k examples (per label, or in total); DataError for an example whose
    label is not in ``labels``; ConfigError for k < 1.
    """
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    task_name = task if task is not None else next((e.task for e in examples if e.task), "")
    where = f"task {task_name!r}" if task_name else "the examples"
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)

    if labels is None:
        if len(shuffled) < 2 * k:
            raise DataError(
                f"{where}: {len(shuffled)} examples cannot give {k} train + {k} dev examples; "
                f"use k <= {len(shuffled) // 2}"
            )
        return shuffled[:k], shuffled[k : 2 * k]

    label_set = list(dict.fromkeys(labels))
    if not label_set:
        raise ConfigError("labels must name at least one label (or be None for k examples in total)")
    outside = sorted({e.target for e in shuffled} - set(label_set))
    if outside:
        raise DataError(f"{where}: examples with labels {outside} outside the given label set {label_set}")
    counts = Counter(e.target for e in shuffled)
    short = {label: counts[label] for label in label_set if counts[label] < 2 * k}
    if short:
        feasible = min(counts[label] for label in label_set) // 2
        advice = (
            f"use k <= {feasible}"
            if feasible >= 1
            else "no k fits: resample without labels (k in total) or drop the labels without examples"
        )
        ordered = sorted(short.items(), key=lambda kv: kv[1])
        shown = ", ".join(f"{label!r}: {count}" for label, count in ordered[:_MAX_SHOWN])
        if len(ordered) > _MAX_SHOWN:
            shown += f", and {len(ordered) - _MAX_SHOWN} more"
        raise DataError(
            f"{where}: k={k} per label needs {2 * k} examples of each label (train + dev), "
            f"but {len(short)} of {len(label_set)} labels have fewer ({shown}); {advice}"
        )
    train: list[Example] = []
    dev: list[Example] = []
    taken: Counter[str] = Counter()
    for example in shuffled:
        seen = taken[example.target]
        if seen < k:
            train.append(example)
        elif seen < 2 * k:
            dev.append(example)
        taken[example.target] += 1
    return train, dev
