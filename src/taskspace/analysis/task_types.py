"""IPT's Fig. 4: intrinsic subspace tuning per fine-grained task type, the type included in or excluded from the
training tasks of the subspace.

Reads finished ``subspace-tune`` runs and the reference runs (prompt tuning, ``tune``) of the same tasks. A run on
a task of type Y is *included* when the training tasks of its subspace (recorded in the subspace folder) hold a
task of type Y, and *excluded* when they hold none (``fit-subspace --exclude-type Y``). Types come from the
catalog. Per type and setting: ``E_rel = mean over the type's tasks of mean(IST test) / mean(reference test)``,
seeds averaged per task first; a task without a positive reference is left out (and counted). Nothing is trained
here.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable

from ..errors import DataError
from ..store import read_json
from .relative import Table, mean, ratio

SETTINGS = ("included", "excluded")


def _finished(run: Path) -> tuple[dict, dict]:
    if not (run / "scores.json").is_file():
        raise DataError("not a finished run (no scores.json)", run)
    config, scores = read_json(run / "config.json"), read_json(run / "scores.json")
    if "task" not in config.get("run", {}):
        raise DataError("not a run directory's config (no run.task)", run / "config.json")
    if scores.get("test") is None:
        raise DataError("the run has no test score (its task has no test split)", run)
    return config, scores


def _subspace_tasks(config: dict, run: Path, cache: dict[str, list[str]]) -> list[str]:
    from ..builtin import subspace_folder
    from ..subspace.space import SUBSPACE_JSON

    folder = config.get("subspace", {}).get("path")
    if folder is None:
        raise DataError("not a subspace-tune run (its config names no subspace)", run / "config.json")
    if folder not in cache:
        path = subspace_folder(folder) / SUBSPACE_JSON
        if not path.is_file():
            raise DataError(f"the run's subspace folder {folder} has no {SUBSPACE_JSON} (moved or deleted?)", run)
        cache[folder] = list(read_json(path).get("info", {}).get("tasks", []))
    return cache[folder]


def type_scores(runs: Iterable[str | Path], references: Iterable[str | Path]):
    """``(ist, ref, kinds)``: the test scores of the subspace runs, ``ist[(type, setting)][task]`` (a list over
    seeds), the references' ``ref[task]`` (a list over seeds), and the kinds of run seen (``<recipe> d=<d>
    (<method>)``)."""
    from ..tasks import CATALOG

    ref: dict[str, list[float]] = defaultdict(list)
    for run in map(Path, references):
        config, scores = _finished(run)
        ref[config["run"]["task"]].append(float(scores["test"]))
    ist: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    kinds, cache = set(), {}
    for run in map(Path, runs):
        config, scores = _finished(run)
        task = config["run"]["task"]
        if task not in CATALOG:
            raise DataError(f"task {task!r} is not in the catalog: it has no type", run)
        kind = CATALOG[task].type
        trained_on = _subspace_tasks(config, run, cache)
        setting = "included" if any(CATALOG.get(t) and CATALOG[t].type == kind for t in trained_on) else "excluded"
        ist[(kind, setting)][task].append(float(scores["test"]))
        kinds.add(f"{config['subspace'].get('recipe')} d={config.get('d')} ({config['run'].get('method')})")
    return ist, dict(ref), sorted(kinds)


def type_table(runs: Iterable[str | Path], references: Iterable[str | Path]) -> tuple[Table, Table]:
    """The per-type summary (type, category, E_rel included and excluded, their difference) and the per-task
    detail (type, setting, task, IST and reference means, ratio)."""
    from ..tasks import CATALOG

    ist, ref, kinds = type_scores(runs, references)
    if not ist:
        raise DataError("no subspace-tune runs given", Path("."))
    summary, detail = [], []
    left_out = 0
    for kind in sorted({k for k, _ in ist}):
        values = {}
        for setting in SETTINGS:
            by_task = ist.get((kind, setting), {})
            ratios = []
            for task, scores in sorted(by_task.items()):
                r = mean(ref[task]) if task in ref else None
                q = ratio(mean(scores), r)
                left_out += q is None
                ratios.append(q)
                detail.append([kind, setting, task, len(scores), _pct(mean(scores)), _pct(r), _pct(q)])
            values[setting] = (_pct(mean(ratios)), len(by_task))
        category = next(CATALOG[t].category for (k, _), tasks in ist.items() if k == kind for t in tasks)
        inc, exc = values["included"][0], values["excluded"][0]
        summary.append([kind, category, inc, values["included"][1], exc, values["excluded"][1],
                        None if inc is None or exc is None else inc - exc])
    notes = (f"Runs: {', '.join(kinds)}. E_rel: mean over the type's tasks of the IST test score over the "
             "reference's (seeds averaged per task first).")
    if left_out:
        notes += f" {left_out} task(s) without a reference run or a positive reference score are left out."
    return (Table("IST by task type, included in / excluded from the subspace's training tasks (IPT Fig. 4)",
                  ["type", "category", "included E_rel %", "included tasks", "excluded E_rel %", "excluded tasks",
                   "included - excluded"], summary, notes),
            Table("IST by task type: per task", ["type", "setting", "task", "runs", "IST %", "reference %",
                                                 "relative %"], detail))


def plot_types(summary: Table, path: str | Path) -> Path:
    """Fig. 4 as grouped bars: per type, E_rel included and excluded."""
    from .plots import pyplot, save_figure

    plt = pyplot("the task-type plot", " (or pass --no-png)")
    import numpy as np

    types = [row[0] for row in summary.rows]
    x = np.arange(len(types))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(types) + 2), 4))
    for offset, (label, col) in zip((-0.2, 0.2), (("included", 2), ("excluded", 4))):
        heights = [np.nan if row[col] is None else row[col] for row in summary.rows]
        ax.bar(x + offset, heights, width=0.4, label=label)
    ax.axhline(100, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(x, types, rotation=30, ha="right")
    ax.set_ylabel("E_rel vs reference (%)")
    ax.set_title("IST by task type (IPT Fig. 4)", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * x
