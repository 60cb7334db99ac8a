"""Where a task's few-shot files are: ``<task>_<k>_<seed>_{train,dev,test}.{jsonl,tsv}`` in ``<data_dir>/<task>/``
or directly in ``<data_dir>`` (:mod:`taskspace.tasks.formats` reads them)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from taskspace.errors import DataError

#: File extensions of the two layouts, in order of preference when both exist.
LAYOUTS: tuple[str, ...] = (".jsonl", ".tsv")


def _candidates(data_dir: Path, task: str, k: int, seed: int, split: str) -> list[Path]:
    """Paths a split file may have, in order of preference: task folder first, JSONL before TSV."""
    name = f"{task}_{k}_{seed}_{split}"
    return [folder / f"{name}{ext}" for folder in (data_dir / task, data_dir) for ext in LAYOUTS]


def _first_existing(paths: Iterable[Path]) -> Path | None:
    for candidate in paths:
        if candidate.is_file():
            return candidate
    return None


def find_test_file(data_dir: str | Path, task: str, k: int, seed: int) -> Path | None:
    """The test file for ``seed``, else the seed-100 test file (the shared-data convention: one test set serves
    every seed), else None."""
    data_dir = Path(data_dir)
    found = _first_existing(_candidates(data_dir, task, k, seed, "test"))
    if found is None and seed != 100:
        found = _first_existing(_candidates(data_dir, task, k, 100, "test"))
    return found


def has_test_file(data_dir: str | Path, task: str) -> bool:
    """Whether ``data_dir`` holds a test file of ``task`` for any k and seed, in either layout."""
    data_dir = Path(data_dir)
    pattern = re.compile(rf"^{re.escape(task)}_\d+_\d+_test(?:{'|'.join(map(re.escape, LAYOUTS))})$")
    return any(pattern.match(f.name) for folder in (data_dir / task, data_dir) if folder.is_dir()
               for f in folder.iterdir())


def task_files(data_dir: str | Path, task: str, k: int, seed: int) -> dict[str, Path]:
    """Locate the split files of one task for one seed.

    Looks for ``<task>_<k>_<seed>_{train,dev,test}.{jsonl,tsv}`` in ``<data_dir>/<task>/`` and then directly in
    ``<data_dir>`` (where CrossFit's own TSVs sometimes lie); per split, the task folder wins over ``data_dir`` and
    JSONL over TSV. When the seed has no test file of its own, the seed-100 test file is used (the shared data
    convention: the same test set serves every seed); the returned path shows which file that is. Returns
    ``{"train": ..., "dev": ..., "test": ...}`` without "test" when there is no test file at all.

    Raises DataError naming every path tried when the train or dev file is missing.
    """
    data_dir = Path(data_dir)
    files: dict[str, Path] = {}
    for split in ("train", "dev"):
        tried = _candidates(data_dir, task, k, seed, split)
        found = _first_existing(tried)
        if found is None:
            raise DataError(
                f"no {split} file for task {task!r} (k={k}, seed={seed}); tried: " + ", ".join(str(p) for p in tried),
                data_dir,
            )
        files[split] = found
    test = find_test_file(data_dir, task, k, seed)
    if test is not None:
        files["test"] = test
    return files
