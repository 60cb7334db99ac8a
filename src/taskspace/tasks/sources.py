"""Your own task data: split files with a header (CSV, TSV, JSON lines) and Hugging Face ``datasets``.

A task of your own is a folder (``<data_dir>/<task>/``, or the data folder itself) holding one of:

* split files with a header: ``train``, ``dev`` (or ``validation``, ``valid``, ``val``) and optionally ``test``,
  each as ``.csv``, ``.tsv`` or ``.jsonl`` (one JSON object per line; its keys are the columns);
* a dataset saved by ``datasets``' ``save_to_disk`` (a ``DatasetDict`` with the same split names), read with
  ``load_from_disk``. A hub name (``hub:NAME`` or ``hub:NAME:CONFIG`` as the data folder) is downloaded once with
  ``load_dataset`` and saved under taskspace's cache folder, then read like a local one.

:class:`Columns` names the input, output and options columns (defaults: ``input``, ``output``, ``options``; a
file without an ``input`` / ``output`` column but with ``text`` / ``label``, the Hugging Face names, is read by
those). An output cell is one reference string, or (JSON lines, ``datasets`` sequences) a list of references; a
``datasets`` ``ClassLabel`` output is read as its label names, which also become the task's options unless an
options column is given. An options cell is a list (JSON lines, ``datasets``) or, in CSV and TSV, a JSON array
such as ``["yes", "no"]``. Every example's output must then be one of its options. Outputs without options that
look like class labels (a few values, each recurring) become the options: see :mod:`taskspace.tasks.classlabels`.

``datasets`` is an optional dependency (``pip install "taskspace[datasets]"``): only saved datasets and hub names
need it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterator

from taskspace.config import Config, option
from taskspace.errors import ConfigError, DataError
from taskspace.tasks.classlabels import MAX_CLASS_LABELS
from taskspace.tasks.example import Example

__all__ = ["Columns", "OWN_SPLITS", "HUB_PREFIX", "is_own_task", "own_task_folder", "read_own_splits",
           "resolve_hub", "split_files"]

#: Split name -> the file / dataset split names accepted for it, in order of preference.
OWN_SPLITS: dict[str, tuple[str, ...]] = {"train": ("train",), "dev": ("dev", "validation", "valid", "val"),
                                          "test": ("test",)}
_SUFFIXES = (".csv", ".tsv", ".jsonl")
_SAVED_DATASET = ("dataset_dict.json", "state.json")
#: A data folder spelled ``hub:NAME[/CONFIG]`` is a dataset on the Hugging Face hub.
HUB_PREFIX = "hub:"
#: The Hugging Face convention's input and output column names, read where ``input`` / ``output`` are absent.
HF_COLUMNS = {"input_column": "text", "output_column": "label"}


def _column_name(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "a column name"


@dataclass
class Columns(Config):
    """Which columns of your own data hold the input, the output and (optionally) the options."""

    input_column: str = option("input", "your own data: the column of the inputs", check=_column_name)
    output_column: str = option("output", "your own data: the column of the answers (text, a list of references, "
                                          "or a class label)", check=_column_name)
    options_column: str = option("options", "your own data: the column of the options, if any (a list; in CSV "
                                            "and TSV a JSON array)", check=_column_name)
    infer_options: bool = option(True, f"your own data without options: outputs of at most {MAX_CLASS_LABELS} "
                                       "distinct values, each recurring, that hold every dev and test output "
                                       "become the options (as datasets' ClassLabel)", since="0.2")

    @property
    def input(self) -> str:
        return self.input_column

    @property
    def output(self) -> str:
        return self.output_column

    @property
    def options(self) -> str:
        return self.options_column

    def found_in(self, names: Collection[str]) -> Columns:
        """These columns, with ``text`` / ``label`` (the Hugging Face names) for an input / output column left at
        its default name when ``names`` (a file's columns) lack it and hold the Hugging Face one."""
        default = Columns()
        found = {f: hf for f, hf in HF_COLUMNS.items()
                 if getattr(self, f) == getattr(default, f) and getattr(self, f) not in names and hf in names}
        return self.replace(**found) if found else self

    def missing(self, what: str, names: Collection[str]) -> str:
        """The message for a file whose columns ``names`` lack the ``what`` ("input" or "output") column."""
        name = getattr(self, what)
        hf = HF_COLUMNS[f"{what}_column"]
        also = f" (nor {hf!r})" if name == getattr(Columns(), what) else ""
        return f"no {what} column {name!r}{also} (columns: {', '.join(map(str, names))}); name it with --{what}-column"


# ----------------------------------------------------------------------------------------------------------------
# Finding a task's own data


def split_files(folder: Path) -> dict[str, Path]:
    """The split files with a header in ``folder``: split -> path (the first accepted name and suffix found).

    Raises DataError for a split name with no file but a folder (or another non-file) of that name: a ``train.csv``
    folder is named as such, not taken for the absence of your own data."""
    found: dict[str, Path] = {}
    for split, names in OWN_SPLITS.items():
        for name in names:
            candidates = [folder / f"{name}{s}" for s in _SUFFIXES]
            hit = next((path for path in candidates if path.is_file()), None)
            if hit is not None:
                found[split] = hit
                break
            other = next((path for path in candidates if path.exists()), None)
            if other is not None:
                raise DataError(f"expected a {split} split file with a header, found "
                                + ("a folder" if other.is_dir() else "something that is not a file"), other)
    return found


def _is_saved_dataset(folder: Path) -> bool:
    return any((folder / f).is_file() for f in _SAVED_DATASET)


def is_own_task(folder: Path) -> bool:
    """Whether ``folder`` holds a task of your own (split files with a header, or a saved dataset)."""
    return folder.is_dir() and (_is_saved_dataset(folder) or "train" in split_files(folder))


def own_task_folder(data_dir: Path, name: str) -> Path | None:
    """Where task ``name``'s own data lie: ``<data_dir>/<name>/``, else the data folder itself; None if neither
    holds a task of your own."""
    for folder in (data_dir / name, data_dir):
        if is_own_task(folder):
            return folder
    return None


# ----------------------------------------------------------------------------------------------------------------
# Reading


def read_own_splits(folder: Path, task: str, columns: Columns) -> tuple[dict[str, list[Example]], dict[str, str]]:
    """Task ``task``'s train, dev and (if present) test examples from ``folder``, and where each split came from.

    Raises DataError naming the file (and line) of anything malformed, and when train or dev is missing.
    """
    if _is_saved_dataset(folder):
        return _read_saved_dataset(folder, task, columns)
    files = split_files(folder)
    missing = [s for s in ("train", "dev") if s not in files]
    if missing:
        names = " or ".join(f"{n}.csv/.tsv/.jsonl" for n in OWN_SPLITS[missing[0]])
        raise DataError(f"no {missing[0]} split: expected {names} with a header", folder)
    splits = {split: _read_table(path, task, columns) for split, path in files.items()}
    return splits, {split: str(path) for split, path in files.items()}


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row as a dict) of a CSV / TSV file with a header, or of a JSON-lines file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"not valid UTF-8 ({exc.reason}); expected a UTF-8 text file", path) from None
    if path.suffix == ".jsonl":
        for number, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON ({exc.msg}); expected one JSON object per line", path, number) from None
            if not isinstance(record, dict):
                raise DataError(f"a JSON {type(record).__name__} is not a row; expected an object", path, number)
            yield number, record
        return
    # a StringIO with newline="" keeps a line break inside a quoted cell as the csv module expects
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if path.suffix == ".tsv" else ",")
    if not reader.fieldnames:
        raise DataError("empty file: expected a header line naming the columns", path, 1)
    for row in reader:
        if None in row:  # more cells than the header names
            raise DataError(f"{len(reader.fieldnames) + len(row[None])} cells, but the header names "
                            f"{len(reader.fieldnames)} columns", path, reader.line_num)
        yield reader.line_num, row


def _read_table(path: Path, task: str, columns: Columns) -> list[Example]:
    examples = []
    header_checked = False
    for number, row in _rows(path):
        if not examples:  # the first row's (a CSV / TSV header's) names decide for the whole file
            columns = columns.found_in(row)
        if not header_checked:
            for what in ("input", "output"):
                if getattr(columns, what) not in row:
                    raise DataError(columns.missing(what, row), path, 1 if path.suffix != ".jsonl" else number)
            header_checked = path.suffix != ".jsonl"  # JSON lines are checked one by one
        options = row.get(columns.options)
        if isinstance(options, str) and path.suffix != ".jsonl":
            options = _options_cell(options, path, number, columns)
        examples.append(_example(row.get(columns.input), row.get(columns.output), options, task, path, number,
                                 columns))
    if not examples:
        raise DataError("empty split: expected at least one row after the header", path)
    return examples


def _options_cell(cell: str, path: Path, number: int, columns: Columns) -> list[str] | None:
    if not cell.strip():
        return None
    try:
        value = json.loads(cell)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list):
        raise DataError(f"options column {columns.options!r}: {cell!r:.80} is not a JSON array; expected e.g. "
                        '["yes", "no"]', path, number)
    return value


def _example(text: Any, output: Any, options: Any, task: str, path: Path, number: int | None,
             columns: Columns) -> Example:
    where = (path, number)
    if not isinstance(text, str):
        raise DataError(f"input column {columns.input!r}: expected text, got {type(text).__name__}", *where)
    if isinstance(output, (int, float)) and not isinstance(output, bool):
        output = str(output)
    if isinstance(output, str):
        references = (output,)
    elif isinstance(output, (list, tuple)) and output and all(isinstance(o, str) for o in output):
        references = tuple(output)
    else:
        raise DataError(f"output column {columns.output!r}: expected a string or a list of strings, got "
                        f"{output!r:.80}", *where)
    if any(not r for r in references):
        raise DataError(f"output column {columns.output!r}: empty output; expected a non-empty reference", *where)
    if options is None:
        options = ()
    if not isinstance(options, (list, tuple)) or not all(isinstance(o, str) and o for o in options):
        raise DataError(f"options column {columns.options!r}: expected a list of non-empty strings, got "
                        f"{options!r:.80}", *where)
    options = tuple(dict.fromkeys(options))
    if options and references[0] not in options:
        raise DataError(f"output {references[0]!r} is not among the options {list(options)!r:.200}", *where)
    return Example(text, references, options, task=task, meta={"source": str(path), "line": number})


def _read_saved_dataset(folder: Path, task: str, columns: Columns) -> tuple[dict[str, list[Example]], dict[str, str]]:
    datasets = _import_datasets(f"the saved dataset {folder}")
    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as exc:  # datasets raises several types for a damaged folder
        raise DataError(f"cannot be read by datasets.load_from_disk ({type(exc).__name__}: {exc}); expected a "
                        "folder written by save_to_disk", folder) from None
    if not isinstance(loaded, datasets.DatasetDict):
        raise DataError("a single Dataset; expected a DatasetDict with train and dev (or validation) splits",
                        folder)
    splits, sources = {}, {}
    for split, names in OWN_SPLITS.items():
        name = next((n for n in names if n in loaded), None)
        if name is None:
            if split != "test":
                raise DataError(f"no {split} split (splits: {', '.join(loaded)}); expected one of "
                                f"{', '.join(names)}", folder)
            continue
        splits[split] = _dataset_examples(loaded[name], task, columns, folder / name)
        sources[split] = f"{folder} (split {name})"
    return splits, sources


def _dataset_examples(dataset, task: str, columns: Columns, where: Path) -> list[Example]:
    import datasets

    columns = columns.found_in(dataset.column_names)
    for what in ("input", "output"):
        if getattr(columns, what) not in dataset.column_names:
            raise DataError(columns.missing(what, dataset.column_names), where)
    feature = dataset.features[columns.output]
    names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    has_options = columns.options in dataset.column_names
    if len(dataset) == 0:
        raise DataError("empty split: expected at least one row", where)
    examples = []
    for i, row in enumerate(dataset):
        output = row[columns.output]
        if names is not None:
            if not isinstance(output, int) or not 0 <= output < len(names):
                raise DataError(f"row {i}: label {output!r} is not one of the {len(names)} class labels", where)
            output = names[output]
        options = row[columns.options] if has_options else names
        examples.append(_example(row[columns.input], output, options, task, where, i + 1, columns))
    return examples


def _import_datasets(what: str):
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"{what} needs the datasets package: pip install 'taskspace[datasets]'") from None
    return datasets


# ----------------------------------------------------------------------------------------------------------------
# Hub names


def hub_cache_dir() -> Path:
    from taskspace.cache import cache_dir

    return cache_dir() / "datasets"


def resolve_hub(data_dir: str) -> Path:
    """The local folder of ``hub:NAME`` or ``hub:NAME:CONFIG`` (``hub:nyu-mll/glue:sst2``): downloaded with
    ``datasets.load_dataset`` and saved with ``save_to_disk`` under the cache folder the first time (into a
    temporary folder that is then renamed, so an interrupted download is never used), reused afterwards."""
    spec = data_dir[len(HUB_PREFIX):].strip()
    name, _, config = spec.partition(":")
    if not name or (_ and not config):
        raise ConfigError(f"--data-dir {data_dir!r}: expected hub:NAME or hub:NAME:CONFIG")
    slug = hashlib.sha256(spec.encode()).hexdigest()[:12]
    folder = hub_cache_dir() / f"{spec.replace('/', '--').replace(':', '--')}-{slug}"
    if _is_saved_dataset(folder):
        return folder
    datasets = _import_datasets(f"--data-dir {data_dir}")
    try:
        loaded = datasets.load_dataset(name, config or None)
    except Exception as exc:  # offline, unknown name, unknown config: datasets' own message says which
        raise ConfigError(f"--data-dir {data_dir}: datasets.load_dataset({name!r}, {config or None!r}) failed "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    loaded.save_to_disk(str(tmp))
    os.replace(tmp, folder)
    return folder
