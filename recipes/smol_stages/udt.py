"""UDT's stages over the bank: the unified subspace of the methods' solutions (the subspace approximation), and the
transfer matrix (each method's subspace solutions decoded by every method's up-projection)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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
    under ``transfer/<source>/<target>``."""
    for m in fit.methods:
        for t in run.unseen:
            for s in run.seeds:
                source = folder / "runs" / f"{t}-d{run.cfg['data_seed']}-{m}-s{s}"
                for target, sc in transfer(space, folder, source).items():
                    run.record(f"transfer/{m}/{target}", t, s, sc)
    run.save()
