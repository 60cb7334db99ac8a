"""Loading one task's few-shot splits: :class:`Task` and :func:`load_task`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from taskspace.errors import ConfigError, DataError, UnknownTaskError
from taskspace.tasks.catalog import CATALOG, TaskInfo, close_task_names
from taskspace.tasks.example import Example
from taskspace.tasks.formats import SPLITS, find_test_file, read_examples, task_files
from taskspace.tasks.metrics import METRICS
from taskspace.tasks.sampling import DEFAULT_SEEDS, pool_examples
from taskspace.tasks.sampling import resample as resample_examples

__all__ = ["Task", "load_task", "available_tasks", "default_data_dir", "DATA_ENV"]

#: Environment variable naming the default data folder.
DATA_ENV = "TASKSPACE_DATA"

_TRAIN_FILE = re.compile(r"^(?P<task>.+)_\d+_\d+_train\.(?:jsonl|tsv)$")


@dataclass
class Task:
    """The train / dev / test examples of one task, with where they came from.

    ``test`` is empty when the data hold no test file for the task (``has_test`` is then false). ``sources`` maps
    each split to the file it was read from, or to a description of how it was resampled / why it is missing.
    """

    name: str
    info: TaskInfo
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    k: int
    seed: int
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        """The CrossFit metric name the task is scored with."""
        return self.info.metric

    @property
    def has_test(self) -> bool:
        return bool(self.test)

    def split(self, name: str) -> list[Example]:
        """The examples of split ``name`` (train, dev or test).

        Raises ConfigError for another name, DataError for "test" when the task has no test file.
        """
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        if name == "test" and not self.test:
            why = self.sources.get("test", "no test file")
            raise DataError(f"task {self.name!r} has no test split ({why}); use dev")
        return getattr(self, name)


def default_data_dir() -> Path:
    """The data folder named by $TASKSPACE_DATA; ConfigError when it is unset or not a folder."""
    value = os.environ.get(DATA_ENV, "")
    if not value:
        raise ConfigError(
            f"no data folder given: pass --data-dir or set {DATA_ENV} to the folder holding the task folders "
            "(e.g. .../shared/data/crossfit)"
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{DATA_ENV}={value!r} is not a folder; expected the folder holding the task folders")
    return path


def available_tasks(data_dir: str | Path) -> list[str]:
    """Sorted names of the tasks with few-shot train files in ``data_dir``.

    A task counts when ``<data_dir>/<task>/`` holds a ``<task>_<k>_<seed>_train.{jsonl,tsv}`` file, or when such a
    file lies directly in ``data_dir``.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ConfigError(f"data folder {data_dir} does not exist")
    names: set[str] = set()
    for entry in data_dir.iterdir():
        if entry.is_dir():
            if any((m := _TRAIN_FILE.match(f.name)) and m["task"] == entry.name for f in entry.iterdir()):
                names.add(entry.name)
        elif m := _TRAIN_FILE.match(entry.name):
            names.add(m["task"])
    return sorted(names)


def _has_files(data_dir: Path, name: str) -> bool:
    if (data_dir / name).is_dir():
        return True
    flat = re.compile(rf"^{re.escape(name)}_\d+_\d+_(?:train|dev|test)\.(?:jsonl|tsv)$")
    return any(flat.match(p.name) for p in data_dir.iterdir() if p.is_file())


def _check_options(examples: list[Example], info: TaskInfo) -> None:
    """Every example's options must fit the catalog: the fixed labels, per-example choices, or none."""
    for example in examples:
        where = (example.meta.get("source"), example.meta.get("line"))
        if info.labels:
            if example.options != info.labels:
                raise DataError(
                    f"options {list(example.options)!r:.200} differ from the catalog labels {list(info.labels)!r:.200} "
                    f"of task {info.name!r}; expected exactly these options",
                    *where,
                )
        elif info.has_options and not example.options:
            raise DataError(
                f"no options, but task {info.name!r} has per-example answer choices; expected options "
                "(JSONL 'options', or the TSV ' (A) ... (B) ...' suffix)",
                *where,
            )
        elif not info.has_options and example.options:
            raise DataError(
                f"options {list(example.options)!r:.200} given, but task {info.name!r} is generative; expected none",
                *where,
            )


def _test_source(path: Path | None, k: int, seed: int, data_dir: Path, name: str) -> str:
    if path is None:
        return f"none: no {name}_{k}_<seed>_test file in {data_dir} (or its {name}/ folder)"
    if seed != 100 and path.stem.endswith(f"_{k}_100_test"):
        return f"{path} (the seed-100 test set, which the data convention shares across seeds)"
    return str(path)


def load_task(
    name: str,
    data_dir: str | Path,
    *,
    k: int = 16,
    seed: int = 100,
    resample: bool = False,
    resample_k: int | None = None,
    metric: str | None = None,
) -> Task:
    """Load one task's splits from ``data_dir``.

    Reads ``<name>_<k>_<seed>_{train,dev,test}`` in whichever layout exists (JSONL or TSV; TSV files of
    fixed-label tasks get the catalog labels as options), see :func:`taskspace.tasks.formats.task_files`; the test
    file falls back to the seed-100 one, and ``sources`` says which file each split came from. With
    ``resample=True``, train and dev are drawn instead from the pooled train + dev files of the seeds
    100, 13, 21, 42, 87 (:func:`pool_examples`) by :func:`resample` with ``seed`` as the sampling seed and
    ``resample_k`` (default k): k per label for fixed-label tasks (over the labels that occur in the pool), k in
    total otherwise (multiple-choice QA, generative tasks).

    ``metric`` overrides the catalog's metric, and lets a task outside the catalog be loaded from your own files
    (category and type "unknown", has_options from the data, no fixed labels). Every example carries
    ``task=name``; for catalogued tasks each example's options must fit the catalog (DataError otherwise).

    Raises UnknownTaskError (with close names) for a task that is neither catalogued nor given a metric, or that
    has no files in ``data_dir``; DataError for missing or malformed files; ConfigError for an unknown metric.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ConfigError(f"data folder {data_dir} does not exist; pass --data-dir or set {DATA_ENV}")
    if k < 1:
        raise ConfigError(f"--k {k}: expected a positive number (shots in the file names, e.g. 16)")
    if metric is not None and metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    if resample_k is not None and not resample:
        raise ConfigError("resample_k is only used with resample=True")

    info = CATALOG.get(name)
    if (info is None and metric is None) or not _has_files(data_dir, name):
        known = sorted(set(CATALOG) | set(available_tasks(data_dir)))
        close = [c for c in close_task_names(name, known) if c != name]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        if info is None and metric is None and _has_files(data_dir, name):
            reason = (f"is not in the task catalog, so its metric is unknown: pass --metric (metric=... in Python), "
                      f"one of {', '.join(METRICS)}, to use your own task")
            hint = ""
        elif info is None and metric is None:
            reason = "is not in the task catalog and has no files in the data folder"
        else:
            reason = f"has no folder {name}/ and no {name}_<k>_<seed>_<split>.jsonl/.tsv files"
        raise UnknownTaskError(f"task {name!r} {reason}; data folder: {data_dir}{hint}")

    labels = info.labels if info is not None and info.labels else None
    # Generative tasks never carry inline options: an input that happens to end in "(A) .. (B) .." stays whole.
    parse_options = info.has_options if info is not None else True

    def read(path: Path) -> list[Example]:
        return read_examples(path, name, labels, parse_options=parse_options)

    sources: dict[str, str] = {}
    if resample:
        pool = pool_examples(data_dir, name, k=k)
        if info is not None:
            _check_options(pool, info)
        draw_k = k if resample_k is None else resample_k
        present = set(e.target for e in pool)
        # Per label over the labels that occur: tweet_eval-irony's options "0" / "1" are never an answer.
        draw_labels = tuple(label for label in labels if label in present) if labels else None
        train, dev = resample_examples(pool, draw_k, seed, draw_labels, task=name)
        per = f"{draw_k} per label over {len(draw_labels)} labels" if draw_labels else f"{draw_k} in total"
        description = (
            f"resampled with seed {seed}, {per}, from the {len(pool)} distinct train+dev examples of the "
            f"k={k} files of seeds {', '.join(map(str, DEFAULT_SEEDS))} in {data_dir}"
        )
        sources["train"] = sources["dev"] = description
        test_path = find_test_file(data_dir, name, k, seed)
    else:
        files = task_files(data_dir, name, k, seed)
        train, dev = read(files["train"]), read(files["dev"])
        sources["train"], sources["dev"] = str(files["train"]), str(files["dev"])
        test_path = files.get("test")
    test = read(test_path) if test_path is not None else []
    sources["test"] = _test_source(test_path, k, seed, data_dir, name)

    if info is None:
        has_options = any(e.options for split in (train, dev, test) for e in split)
        info = TaskInfo(name, metric, has_options, (), "unknown", "unknown")  # type: ignore[arg-type]
    else:
        for split in (train, dev, test):
            _check_options(split, info)
        if metric is not None:
            info = replace(info, metric=metric)
    return Task(name, info, train, dev, test, k, seed, sources)
