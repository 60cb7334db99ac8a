"""Loading one task's few-shot splits: :class:`Task` and :func:`load_task`."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from taskspace.errors import ConfigError, DataError, UnknownTaskError
from taskspace.tasks.catalog import CATALOG, TaskInfo, close_task_names
from taskspace.tasks.classlabels import with_class_labels
from taskspace.tasks.example import Example
from taskspace.tasks.files import find_test_file, task_files
from taskspace.tasks.formats import SPLITS, inline_options_suffix, read_examples
from taskspace.tasks.metrics import resolve_metric
from taskspace.tasks.sampling import DEFAULT_SEEDS, example_key, pool_examples
from taskspace.tasks.sampling import resample as resample_examples
from taskspace.tasks.sources import HUB_PREFIX, Columns, is_own_task, own_task_folder, read_own_splits, resolve_hub

__all__ = ["Task", "load_task", "load_task_as", "available_tasks", "default_data_dir", "DATA_ENV"]

#: Environment variable naming the default data folder.
DATA_ENV = "TASKSPACE_DATA"

logger = logging.getLogger(__name__)

#: How ``sources["test"]`` begins for a test split drawn from the held-out pool (``load_task``'s ``pool_test``).
HELD_OUT = "held out"

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
    #: Whether each input ends with its answer choices, `` (A) opt1 (B) opt2 ...`` (CrossFit's multiple-choice
    #: form, :func:`with_inline_choices`): what a model that generates its answer reads them from.
    inline_choices: bool = False

    @property
    def metric(self) -> str:
        """The CrossFit metric name the task is scored with."""
        return self.info.metric

    @property
    def has_test(self) -> bool:
        return bool(self.test)

    @property
    def test_held_out(self) -> bool:
        """Whether the test split is the held-out pool of a task without a test file (``load_task``'s
        ``pool_test``) rather than the data's test file."""
        return self.sources.get("test", "").startswith(HELD_OUT)

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
    file lies directly in ``data_dir``; or when ``<data_dir>/<task>/`` holds a task of your own
    (:mod:`taskspace.tasks.sources`). A ``data_dir`` that is itself one task of your own is that one task, under
    its folder's name (:func:`load_task` reads it under any name; its subfolders, a saved dataset's splits, are no
    tasks).
    """
    data_dir = local_data_dir(data_dir)
    if not data_dir.is_dir():
        raise ConfigError(f"data folder {data_dir} does not exist")
    if is_own_task(data_dir):
        return [data_dir.resolve().name]
    names: set[str] = set()
    for entry in data_dir.iterdir():
        if entry.is_dir() and is_own_task(entry):
            names.add(entry.name)
        elif entry.is_dir():
            if any((m := _TRAIN_FILE.match(f.name)) and m["task"] == entry.name for f in entry.iterdir()):
                names.add(entry.name)
        elif m := _TRAIN_FILE.match(entry.name):
            names.add(m["task"])
    return sorted(names)


def local_data_dir(data_dir: str | Path) -> Path:
    """The data folder as a local path: a ``hub:NAME[:CONFIG]`` dataset is downloaded into the cache first."""
    if isinstance(data_dir, str) and data_dir.startswith(HUB_PREFIX):
        return resolve_hub(data_dir)
    return Path(data_dir)


def load_task_as(settings: Any, *, name: str | None = None, data_dir: str | Path | None = None) -> Task:
    """The task a configuration names (a TuneConfig, SubspaceTuneConfig or BankSpec, or a run's recorded settings
    as a dict): its data folder, few-shot files or resampling, metric and columns; ``name`` and ``data_dir``
    replace the recorded ones (a bank's tasks, a moved data folder)."""
    if isinstance(settings, Mapping):
        get = settings.get
    else:
        def get(key, default=None):
            return getattr(settings, key, default)
    columns = get("columns")
    if isinstance(columns, Mapping):
        columns = Columns.from_dict(columns)
    return load_task(name or get("task"), data_dir or get("data_dir"), k=get("k", 16), seed=get("data_seed", 100),
                     resample=get("resample", False), resample_k=get("resample_k"), metric=get("metric"),
                     columns=columns, pool_test=get("pool_test", False))


def default_metric(has_options: bool) -> str:
    """The metric of a task outside the catalog when none is named: ACC with options, EM for generated text."""
    return "ACC" if has_options else "EM"


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
    columns: Columns | None = None,
    pool_test: bool = False,
) -> Task:
    """Load one task's splits from ``data_dir``.

    Reads ``<name>_<k>_<seed>_{train,dev,test}`` in whichever layout exists (JSONL or TSV; TSV files of
    fixed-label tasks get the catalog labels as options), see :func:`taskspace.tasks.files.task_files`; the test
    file falls back to the seed-100 one, and ``sources`` says which file each split came from. With
    ``resample=True``, train and dev are drawn instead from the pooled train + dev files of the seeds
    100, 13, 21, 42, 87 (:func:`pool_examples`) by :func:`resample` with ``seed`` as the sampling seed and
    ``resample_k`` (default k): k per label for fixed-label tasks (over the labels that occur in the pool), k in
    total otherwise (multiple-choice QA, generative tasks).

    With ``pool_test=True``, a task without a test file is tested on a held-out pool instead of having no test
    split: the distinct train + dev examples of its k-shot files of the seeds 100, 13, 21, 42, 87 that are not in
    this task's train or dev (:func:`held_out_pool`). CrossFit draws every seed's files from the dataset's training
    set, so these examples are unseen by a run on this seed's files but come from the training distribution, not
    from the dataset's own test set; ``sources["test"]`` says so. A task with a test file keeps it.

    ``metric`` overrides the catalog's metric: a built-in name, one registered with
    :func:`taskspace.tasks.metrics.register_metric`, or ``module:function``. A task outside the catalog is loaded
    from its files (category and type "unknown", has_options from the data, no fixed labels) and scored with
    ``metric``, else with ACC when its examples have options and EM when they do not (said once through the
    ``logging`` module, and recorded in ``sources["metric"]``). Every example carries ``task=name``; for
    catalogued tasks each example's options must fit the catalog (DataError otherwise).

    ``data_dir`` may also hold a task of your own (or be one): split files with a header or a saved ``datasets``
    dataset, with ``columns`` naming its input, output and options columns; or be ``hub:NAME[:CONFIG]``, a hub
    dataset (see :mod:`taskspace.tasks.sources`). Such data are used as they are (``k`` and ``seed`` do not
    select files, and ``resample`` is refused), and are not checked against the catalog; but outputs without
    options that look like class labels become every example's options (and ``info.labels``), said once and
    recorded in ``sources["options"]``, unless ``columns`` names an options column or sets ``infer_options``
    false (:mod:`taskspace.tasks.classlabels`).

    Raises UnknownTaskError (with close names) for a task that has no files in ``data_dir``; DataError for
    missing or malformed files; ConfigError for an unknown metric.
    """
    if k < 1:
        raise ConfigError(f"--k {k}: expected a positive number (shots in the file names, e.g. 16)")
    if metric is not None:
        metric = resolve_metric(metric)
    if resample_k is not None and not resample:
        raise ConfigError("resample_k is only used with resample=True")
    columns = columns if columns is not None else Columns()
    data_dir = local_data_dir(data_dir)
    if not data_dir.is_dir():
        raise ConfigError(f"data folder {data_dir} does not exist; pass --data-dir or set {DATA_ENV}")

    info = CATALOG.get(name)
    own = own_task_folder(data_dir, name)
    if own is not None:
        if resample:
            raise ConfigError(f"--resample: task {name!r} is your own data ({own}), used as it is; resampling "
                              "draws from CrossFit's few-shot files")
        if pool_test:
            raise ConfigError(f"--pool-test: task {name!r} is your own data ({own}), used as it is; the held-out "
                              "pool is drawn from CrossFit's few-shot files of other seeds (give your data a test "
                              "file instead)")
        splits, sources = read_own_splits(own, name, columns)
        labels: tuple[str, ...] = ()
        if columns.infer_options and columns.options == Columns().options:  # --options-column names them instead
            splits, labels = with_class_labels(name, splits, sources)
        return _own_task(name, info, metric, splits, sources, k, seed, labels)
    if columns != Columns():
        raise ConfigError(f"--input-column/--output-column/--options-column/--no-infer-options: task {name!r} is "
                          "read from CrossFit files, whose columns are fixed (and options given); these options "
                          "apply to your own files (a folder with train/dev files with a header, or a saved dataset)")
    if not _has_files(data_dir, name):
        known = sorted(set(CATALOG) | set(available_tasks(data_dir)))
        close = [c for c in close_task_names(name, known) if c != name]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        if info is None:
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
    if pool_test and test_path is None:
        test = held_out_pool(pool if resample else pool_examples(data_dir, name, k=k), train + dev)
        sources["test"] = (f"{HELD_OUT}, as there is no test file: the {len(test)} distinct train+dev examples of the "
                           f"k={k} files of seeds {', '.join(map(str, DEFAULT_SEEDS))} in {data_dir} that are not in "
                           "this train or dev (from the dataset's training set, not its test set)")

    per_example = None
    if info is None:
        info = _uncatalogued(name, metric, (train, dev, test), sources)
    else:
        for split in (train, dev, test):
            _check_options(split, info)
        per_example = info.options_kind == "per-example"
        if metric is not None:
            info = replace(info, metric=metric)
    return with_inline_choices(Task(name, info, train, dev, test, k, seed, sources), per_example)


def held_out_pool(pool: list[Example], used: list[Example]) -> list[Example]:
    """The examples of ``pool`` (:func:`pool_examples`) that are not among ``used`` (a run's train and dev), in the
    pool's order: input, references and options compared, as the pool compares them."""
    seen = {example_key(e) for e in used}
    return [e for e in pool if example_key(e) not in seen]


def _uncatalogued(name: str, metric: str | None, splits, sources: dict[str, str]) -> TaskInfo:
    """A task outside the catalog: options from its data, metric as given or the default (said and recorded)."""
    has_options = any(e.options for split in splits for e in split)
    if metric is None:
        metric = default_metric(has_options)
        why = "its examples have options" if has_options else "its answers are generated text"
        sources["metric"] = f"{metric}: the default for a task outside the catalog ({why}); --metric names another"
        logger.warning("task %s is not in the catalog: scored with %s (%s); pass --metric to choose another",
                       name, metric, why)
    else:
        sources["metric"] = f"{metric}, as given"
    return TaskInfo(name, metric, has_options, (), "unknown", "unknown")


def with_inline_choices(task: Task, per_example: bool | None = None) -> Task:
    """``task`` with CrossFit's multiple-choice input form (SPEC): where the options are per-example answer choices,
    each input ends with them, `` (A) opt1 (B) opt2 ...``, so that a model answering by generation sees what it
    chooses among (without them, multiple-choice QA answered by generation is a guess at the option's wording).
    A fixed label set (sentiment, NLI, ...) is not written, as CrossFit does not; generative tasks keep their
    inputs. ``per_example``: whether the options are answer choices (the catalog's word for a catalogued task);
    None decides from the data: options that differ between examples."""
    splits = (task.train, task.dev, task.test)
    if per_example is None:
        per_example = len({e.options for split in splits for e in split if e.options}) > 1
    if not per_example or task.info.labels:
        return task

    def inline(example: Example) -> Example:
        if not example.options:
            return example
        try:
            suffix = inline_options_suffix(example.options)
        except ValueError as e:
            raise DataError(f"{e}: per-example answer choices are written after the input", example.meta.get("source"),
                            example.meta.get("line")) from None
        return replace(example, input=example.input + suffix)

    train, dev, test = ([inline(e) for e in split] for split in splits)
    sources = {**task.sources, "choices": "each input ends with its answer choices, ' (A) ... (B) ...'"}
    return replace(task, train=train, dev=dev, test=test, sources=sources, inline_choices=True)


def _own_task(name: str, info: TaskInfo | None, metric: str | None, splits: dict[str, list[Example]],
              sources: dict[str, str], k: int, seed: int, labels: tuple[str, ...]) -> Task:
    """A task of your own; ``labels``: the class labels its outputs were read as (the options of every example)."""
    train, dev, test = splits["train"], splits["dev"], splits.get("test", [])
    if "test" not in sources:
        sources["test"] = "none: no test split in your data"
    if info is not None:  # a catalogued name: its metric, but the data are yours (options not checked)
        has_options = any(e.options for split in (train, dev, test) for e in split)
        chosen = metric or info.metric
        sources["metric"] = f"{chosen}, " + ("as given" if metric else f"the catalog's for {name}")
        info = TaskInfo(name, chosen, has_options, labels, "unknown", "unknown")
    else:
        info = replace(_uncatalogued(name, metric, (train, dev, test), sources), labels=labels)
    return with_inline_choices(Task(name, info, train, dev, test, k, seed, sources))
