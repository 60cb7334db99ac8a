"""IPT's stages over the bank: MSF (the multi-task subspace finding) at a d, the linear subspace of the same bank
(its principal directions around its mean: is MSF's non-linear auto-encoder needed?), and the seen-task challenges
(IST on training tasks with the bank's data and with another seed's files)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from taskspace.subspace import FitData, LinearConfig, MSFConfig, Subspace

from recipe_common import fit_saved, stage_config

from .tuning import tune_in

if TYPE_CHECKING:
    from smol import Runner


def msf(run: Runner, d: int) -> tuple[Subspace, MSFConfig, Path]:
    """IPT's MSF at ``d`` on every training task, in ``ipt-d<d>`` (a stage: fitted once, then loaded)."""
    i = run.cfg["ipt"]
    folder = run.out / f"ipt-d{d}"
    config = stage_config(MSFConfig, i["msf"], method=i.get("method", "prompt"), d=d)
    space = run.stage(f"IPT MSF d={d}", fit_saved, "ipt", config, FitData.from_bank(run.bank, run.train_tasks),
                      folder)
    return space, config, folder


def linear(run: Runner, d: int) -> tuple[Subspace, Path]:
    """The linear subspace at ``d`` of the bank's solutions of every training task, in ``linear-d<d>`` (a stage:
    fitted once, then loaded), and its folder."""
    folder = run.out / f"linear-d{d}"
    config = LinearConfig(method=run.cfg["ipt"].get("method", "prompt"), d=d)
    space = run.stage(f"linear subspace d={d}", fit_saved, "linear", config,
                      FitData.from_bank(run.bank, run.train_tasks), folder)
    return space, folder


def challenges(run: Runner, key: str, name: str, space: Subspace, folder: Path, tasks: list[str]) -> None:
    """IPT's seen-task challenges: IST on training ``tasks`` with the bank's data and with another seed's files,
    first seed, recorded under ``key/same`` and ``key/other``."""
    ist, method = run.cfg["ist"], run.cfg["ipt"].get("method", "prompt")
    for label, data_seed in (("same", run.cfg["data_seed"]), ("other", run.cfg["other_data_seed"])):
        run.stage(f"{name}, training tasks, {label} data", tune_in, run, f"{key}/{label}", space, folder, tasks,
                  method, ist["train"], seeds=run.seeds[:1], data_seed=data_seed, z_std=ist.get("z_std", 0.02))
