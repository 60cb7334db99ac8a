"""IPT's Fig. 7: MSF on a seeded fraction of the training tasks, and IST through it on the unseen tasks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from taskspace.subspace import FitData, MSFConfig
from taskspace.tasks import task_subset

from recipe_common import fit_saved

from .tuning import tune_in

if TYPE_CHECKING:
    from smol import Runner


def task_fraction(run: Runner, f: float, subset_seed: int, msf: MSFConfig, method: str, folder: Path) -> None:
    """MSF (``msf``) on the fraction ``f`` of the training tasks (the subset recorded under
    ``analyses.task_fractions``), in ``folder/tasks-<f>``; IST through it on the unseen tasks, first seed."""
    ist, d = run.cfg["ist"], msf.d
    tasks = task_subset(run.train_tasks, f, subset_seed, "analyses.task_fractions")
    run.results["analyses"].setdefault("task_fractions", {})[str(f)] = tasks
    sub = folder / f"tasks-{f:g}"
    space_f = run.stage(f"analysis: MSF d={d} on {len(tasks)} training tasks ({100 * f:g} %)",
                        fit_saved, "ipt", msf, FitData.from_bank(run.bank, tasks), sub)
    run.stage(f"analysis: IST d={d} through it, unseen tasks (IPT Fig. 7)", tune_in, run,
              f"fraction/{f:g}/d{d}", space_f, sub, run.unseen, method, ist["train"],
              seeds=run.seeds[:1], z_std=ist.get("z_std", 0.02))
