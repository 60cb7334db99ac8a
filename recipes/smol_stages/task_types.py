"""IPT's Fig. 4: MSF without the training tasks of one type, IST through it on the unseen tasks of that type, and
the table of IST by type through the subspace that included the type and the one that excluded it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from taskspace.analysis.task_types import plot_types, type_table
from taskspace.subspace import FitData, MSFConfig
from taskspace.subspace.bank import entry_dir
from taskspace.tasks import CATALOG, exclude_types

from recipe_common import fit_saved

from .tuning import ist_runs, tune_in

if TYPE_CHECKING:
    from smol import Runner


def _of_type(run: Runner, kind: str) -> list[str]:
    """The unseen tasks of type ``kind``."""
    return [t for t in run.unseen if t in CATALOG and CATALOG[t].type == kind]


def _without(run: Runner, kind: str) -> Path:
    """The folder of the subspace fitted without the training tasks of type ``kind``."""
    return run.out / "analyses" / f"without-{kind.replace(' ', '_')}"


def without_type(run: Runner, kind: str, msf: MSFConfig, method: str) -> None:
    """MSF (``msf``) on the training tasks not of type ``kind``; IST through it on the unseen tasks of that type,
    every seed."""
    ist, d = run.cfg["ist"], msf.d
    tasks = exclude_types(run.train_tasks, [kind], "analyses.exclude_types")
    sub = _without(run, kind)
    space_t = run.stage(f"analysis: MSF d={d} without type {kind!r} ({len(tasks)} training tasks)",
                        fit_saved, "ipt", msf, FitData.from_bank(run.bank, tasks), sub)
    run.stage(f"analysis: IST d={d} on {kind!r} unseen tasks through it (IPT Fig. 4)", tune_in, run,
              f"excluded/{kind}/d{d}", space_t, sub, _of_type(run, kind), method, ist["train"],
              z_std=ist.get("z_std", 0.02))


def task_types(run: Runner, a: dict, method: str, main: Path, out: Path) -> None:
    """IST by type of ``a['exclude_types']``, through the subspace in ``main`` (every training task) and through the
    one fitted without the type, relative to the reference; written in ``out``, recorded under
    ``analyses.task_types``."""
    d = a["d"]
    runs, refs = [], []
    for kind in a["exclude_types"]:
        targets = _of_type(run, kind)
        runs += ist_runs(run, _without(run, kind), targets, method)
        runs += ist_runs(run, main, targets, method)
        refs += [entry_dir(run.out / "reference", t, method, seed) for t in targets for seed in run.seeds]
    summary, detail = type_table(runs, refs)
    summary.write(out / "task_types")
    detail.write(out / "task_types_tasks")
    run.results["analyses"]["task_types"] = {"summary": summary.rows, "header": summary.header, "d": d}
    if run.png:
        plot_types(summary, out / "task_types.png")
