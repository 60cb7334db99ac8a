"""Task data: the 101 CrossFit few-shot tasks, their catalog, file formats, resampling and metrics.

Typical use::

    from taskspace.tasks import load_task, compute_metric
    task = load_task("glue-sst2", data_dir, seed=13)
    score = compute_metric(task.metric, predictions, [e.references for e in task.dev])

The names below are imported on first use (PEP 562), so that ``python -m taskspace.tasks.catalog`` runs the
catalog module without importing it twice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "Example": "example",
    "examples_digest": "example",
    "Task": "task",
    "load_task": "task",
    "load_task_as": "task",
    "available_tasks": "task",
    "default_data_dir": "task",
    "TaskInfo": "catalog",
    "task_info": "catalog",
    "tasks_where": "catalog",
    "catalog_markdown": "catalog",
    "CATALOG": "catalog",
    "exclude_types": "selection",
    "task_subset": "selection",
    "compute_metric": "metrics",
    "METRICS": "metrics",
    "read_jsonl": "formats",
    "read_tsv": "formats",
    "read_examples": "formats",
    "write_tsv": "formats",
    "task_files": "files",
    "read_split_file": "formats",
    "pool_examples": "sampling",
    "resample": "sampling",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from taskspace.tasks.catalog import CATALOG, TaskInfo, catalog_markdown, task_info, tasks_where
    from taskspace.tasks.example import Example, examples_digest
    from taskspace.tasks.files import task_files
    from taskspace.tasks.formats import read_examples, read_jsonl, read_split_file, read_tsv, write_tsv
    from taskspace.tasks.metrics import METRICS, compute_metric
    from taskspace.tasks.sampling import pool_examples, resample
    from taskspace.tasks.selection import exclude_types, task_subset
    from taskspace.tasks.task import Task, available_tasks, default_data_dir, load_task


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'taskspace.tasks' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"taskspace.tasks.{module}"), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
