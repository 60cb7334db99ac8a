"""Stability over seeds (IPT's Table III): the standard deviation of test scores over the seeds of each task,
averaged over tasks, per kind of run (fine-tuning, prompt tuning, IST at some d, ...).

Runs are read from their directories (``tune`` and ``subspace-tune`` runs alike); a run's kind is its method for
tune runs, ``<method> (initialised from <kind>)`` for tune runs started from another run's theta (IPT §V-E:
prompt tuning from IST solutions), and ``<recipe> d=<d> (<method>)`` for subspace-tune runs, so one call can
compare them, as the paper does. The standard deviation is the sample one (n - 1), in points; a (kind, task) with
one run has none and is left out of the kind's mean (and counted).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import DataError
from ..store import read_json
from .relative import Table


def run_kind(run_dir: Path) -> tuple[str, str, float | None]:
    """(kind, task, test score) of a finished run directory."""
    if not (run_dir / "scores.json").is_file():
        raise DataError("not a finished run (no scores.json)", run_dir)
    config = read_json(run_dir / "config.json")
    scores = read_json(run_dir / "scores.json")
    run = config.get("run", {})
    if "task" not in run:
        raise DataError("not a run directory's config (no run.task)", run_dir / "config.json")
    method = run.get("method") or config.get("method", {}).get("method", "?")
    if "subspace" in config:
        kind = f"{config['subspace'].get('recipe', 'subspace')} d={config.get('d')} ({method})"
    elif config.get("imported"):
        kind = f"{method} (imported)"
    elif run.get("init_from"):  # IPT §V-E: prompt tuning started from an IST solution is its own kind of run
        kind = f"{method} (initialised from {_init_kind(run['init_from'])})"
    else:
        kind = method
    return kind, run["task"], scores.get("test")


def _init_kind(init_from: str) -> str:
    """What a run started from, as its kind names it: the kind of the run whose theta it loaded (``<run>/theta``),
    or "a saved delta" when that run's config is not there."""
    source = Path(init_from).parent
    if (source / "config.json").is_file() and (source / "scores.json").is_file():
        return run_kind(source)[0]
    return "a saved delta"


def seed_std(scores_by_task: dict[str, Sequence[float]]) -> tuple[float | None, int, int]:
    """Mean over tasks of the sample standard deviation (in points) of each task's scores; the number of tasks
    that have at least two scores, and of those that do not."""
    stds = [100 * statistics.stdev(v) for v in scores_by_task.values() if len(v) >= 2]
    single = sum(1 for v in scores_by_task.values() if len(v) < 2)
    return (sum(stds) / len(stds) if stds else None), len(stds), single


def stability_table(runs: Iterable[str | Path]) -> tuple[Table, Table]:
    """The summary (kind, mean std, tasks, runs) and the per-task table (kind, task, n, mean, std)."""
    grouped: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        kind, task, test = run_kind(Path(run))
        if test is None:
            raise DataError("the run has no test score (its task has no test split): stability needs test scores",
                            run)
        grouped[kind][task].append(float(test))
    summary, detail = [], []
    for kind, by_task in grouped.items():
        mean_std, n_tasks, single = seed_std(by_task)
        summary.append([kind, mean_std, n_tasks, single, sum(len(v) for v in by_task.values())])
        for task, values in sorted(by_task.items()):
            detail.append([kind, task, len(values), 100 * statistics.fmean(values),
                           100 * statistics.stdev(values) if len(values) >= 2 else None])
    return (Table("Stability over seeds: std of test scores (points), averaged over tasks",
                  ["kind", "mean std", "tasks", "tasks with one run", "runs"], summary,
                  notes="IPT's Table III (BART-base, 120 tasks, 10 runs): fine-tuning 2.20, prompt tuning 3.25, "
                        "IPT d = 10 1.06."),
            Table("Test scores per task over seeds (%)", ["kind", "task", "runs", "mean", "std"], detail))
