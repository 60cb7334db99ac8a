"""UDT's stages over the bank: the unified subspace of the methods' solutions (the subspace approximation), and the
transfer matrix (each method's subspace solutions decoded by every method's up-projection)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from taskspace.store import read_json
from taskspace.subspace import FitData, Subspace, UnifiedConfig, transfer

from recipe_common import fit_saved, stage_config

if TYPE_CHECKING:
    from smol import Runner


def unified(run: Runner) -> tuple[Subspace, UnifiedConfig, Path]:
    """UDT's subspace approximation on every training task, in ``udt`` (a stage: fitted once, then loaded)."""
    folder = run.out / "udt"
    fit = stage_config(UnifiedConfig, run.cfg["udt"]["fit"])
    space = run.stage("UDT subspace approximation", fit_saved, "unified", fit,
                      FitData.from_bank(run.bank, run.train_tasks), folder)
    return space, fit, folder


def transfer_matrix(run: Runner, space: Subspace, fit: UnifiedConfig, folder: Path) -> None:
    """Every method's subspace optimisation runs (each unseen task and seed) transferred to every method, recorded
    under ``transfer/<source>/<target>``. The diagonal is each run's own result (its best step's scores, which
    transfer would compute again); the scores transfer computes are kept in the cache folder, so an interrupted
    stage resumes where it stopped."""
    for m in fit.methods:
        others = [target for target in fit.methods if target != m]
        for t in run.unseen:
            for s in run.seeds:
                source = folder / "runs" / f"{t}-d{run.cfg['data_seed']}-{m}-s{s}"
                run.record(f"transfer/{m}/{m}", t, s, read_json(source / "scores.json"))
                for target, sc in transfer(space, folder, source, targets=others).items():
                    run.record(f"transfer/{m}/{target}", t, s, sc)
    run.save()
