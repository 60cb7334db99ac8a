"""IPT's Fig. 3 over the headline's runs: MSF at more d, IST through each on a few unseen tasks and the seen-task
challenges at every d, first seed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .ipt import challenges, msf
from .tuning import tune_in

if TYPE_CHECKING:
    from smol import Runner


def d_sweep(run: Runner, sweep: dict, method: str) -> None:
    """At each of ``sweep['dims']``: MSF, IST on ``sweep['tasks']`` and, with ``challenge_tasks``, the challenges;
    then the challenges at the headline's d too (its own ran at the largest only)."""
    ist = run.cfg["ist"]
    seen = run.train_tasks[: sweep.get("challenge_tasks", 0)]
    for x in sweep["dims"]:
        # the headline's MSF stage, so that a d added to ipt.dims later reuses its fit and runs
        space_x, _, sub = msf(run, x)
        run.stage(f"analysis: IST d={x} on {len(sweep['tasks'])} unseen tasks (IPT Fig. 3)",
                  tune_in, run, f"sweep/d{x}", space_x, sub, list(sweep["tasks"]), method,
                  ist["train"], seeds=run.seeds[:1], z_std=ist.get("z_std", 0.02))
        if seen:
            challenges(run, f"sweep/d{x}", f"analysis: IST d={x}", space_x, sub, seen)
    for x in run.cfg["ipt"]["dims"] if seen else ():  # the headline's d too (its challenges ran at the largest only)
        space_x, _, sub = msf(run, x)
        challenges(run, f"ipt/d{x}", f"IPT IST d={x}", space_x, sub, seen)
