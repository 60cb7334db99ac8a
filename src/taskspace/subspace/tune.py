"""Tuning inside a subspace: IPT's intrinsic subspace tuning, UDT's subspace optimisation, the random baselines.

A fresh intrinsic vector ``z`` in R^d is trained through one method's frozen up-projection,
``theta = anchor + up(z)``; only the d entries of z change. The run directory is a tune run directory (see
:mod:`taskspace.runs`: the decoded theta is saved like any delta, and ``trainable.safetensors`` holds z).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..builtin import subspace_folder
from ..cache import file_sha256
from ..config import option, positive, positive_count
from ..deltas import METHODS
from ..errors import ConfigError, DataError
from ..evaluation import capped_test_split
from ..runs import check_run_dir, fit_source, is_finished, split_digests
from ..store import exclusive, read_json, read_tensors
from ..tasks import load_task_as
from ..tasks.sources import Columns
from ..train import TrainConfig
from ..tuning import POOL_TEST_HELP, FewShotRunConfig
from .space import SUBSPACE_JSON, SUBSPACE_TENSORS, ProjectedTheta, Subspace


@dataclass
class SubspaceTuneConfig(FewShotRunConfig):
    """One subspace-tune run: a fresh z for a task, trained through one method's up-projection of a subspace."""

    task: str = option(help="the task", cli=False)
    method: str = option(help="the method whose up-projection decodes z", choices=METHODS, cli=False)
    metric: str | None = option(None, "the task's metric: replaces the catalog's (a task outside the catalog is "
                                      "scored with ACC when it has options, else EM)", since="0.2")
    columns: Columns = option(help="the columns of your own data", factory=Columns, since="0.2")
    resample: bool = option(False, "resample train/dev CrossFit-style from the pooled examples with the data seed",
                            since="0.2")
    resample_k: int | None = option(None, "with --resample: examples per label (per task without fixed labels) "
                                          "to draw (none: --k)", check=positive_count, since="0.2")
    pool_test: bool = option(False, POOL_TEST_HELP, since="0.2")
    seed: int = option(0, "seed of z's initialisation (and, on the command line, of the data order)")
    z_init: str = option("normal", "z's initialisation: N(0, z_std^2) (IPT's IST), or zeros (the anchor)",
                         choices=("normal", "zeros"))
    z_std: float = option(0.02, "standard deviation of z's normal initialisation", check=positive("standard deviation"))
    train: TrainConfig = option(help="training settings", factory=lambda: TrainConfig(lr=1e-2, steps=300,
                                                                                       eval_every=50))


def initial_z(d: int, how: str, std: float, seed: int) -> torch.Tensor:
    """The starting intrinsic vector: N(0, std²) (IPT's IST) or zeros (a random subspace around the anchor)."""
    if how == "normal":
        return torch.randn(d, generator=torch.Generator().manual_seed(seed)) * std
    if how == "zeros":
        return torch.zeros(d)
    raise ConfigError(f"z_init={how!r}: expected 'normal' or 'zeros'")


def subspace_id(folder: str | Path) -> dict[str, str]:
    """How a run names its subspace: folder (``builtin:NAME`` as it is, so that a run in a built-in stays valid
    wherever the package is installed), recipe, a hash of its description and one of its tensors (a subspace
    fitted again into the same folder, with the same description but other tensors, is another subspace)."""
    path = subspace_folder(folder) / SUBSPACE_JSON
    meta = read_json(path)
    return {"path": str(Path(folder)), "recipe": meta["recipe"],
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "tensors_sha256": file_sha256(path.with_name(SUBSPACE_TENSORS))}


def same_subspace(recorded: dict[str, str], other: dict[str, str]) -> bool:
    """Whether two recorded subspaces (:func:`subspace_id`) are the same: the same description, and the same
    tensors where both record them (a run made before the tensors' hash was recorded has none)."""
    return recorded["sha256"] == other["sha256"] and (
        "tensors_sha256" not in recorded or "tensors_sha256" not in other
        or recorded["tensors_sha256"] == other["tensors_sha256"])


def _as_recorded(subspace: dict[str, str], run_dir: Path) -> dict[str, str]:
    """``subspace`` as the run in ``run_dir`` recorded it: without the tensors' hash for a run made before it was
    recorded (compared on the description alone, as then)."""
    config = run_dir / "config.json"
    if config.is_file() and "tensors_sha256" not in (read_json(config).get("subspace") or {}):
        return {k: v for k, v in subspace.items() if k != "tensors_sha256"}
    return subspace


def subspace_tune(space: Subspace, folder: str | Path, config: SubspaceTuneConfig, run_dir: str | Path, *,
                  overwrite: bool = False) -> dict[str, Any]:
    """Train a fresh z for ``config.task`` through ``config.method``'s up-projection of ``space`` (saved in
    ``folder``); returns the scores. Resumes an interrupted run; returns a finished one after checking it."""
    run_dir = Path(run_dir)
    config.validate()
    record = {"run": config.identity(), "subspace": subspace_id(folder), "d": space.d}
    task = load_task_as(config)
    test = capped_test_split(task, config.max_test_examples, config.test_sample_seed)
    check_run_dir(run_dir, {"run": record["run"], "subspace": _as_recorded(record["subspace"], run_dir)},
                  overwrite=overwrite,
                  backbone=space.backbone, data={task.name: split_digests(task, test)})
    ms = space[config.method]
    backbone = space.backbone
    backbone.check_task(task.info.has_options, task.name)
    if is_finished(run_dir):
        z = read_tensors(run_dir / "trainable.safetensors")["z"]
        if z.shape != (space.d,):
            raise DataError(f"z has shape {tuple(z.shape)}, the subspace has d = {space.d}", run_dir)
        return read_json(run_dir / "scores.json")
    z0 = initial_z(space.d, config.z_init, config.z_std, config.seed).to(backbone.device)
    source = ProjectedTheta(ms, z0)
    with exclusive(run_dir):  # creates it; a second process on the same run is refused
        return fit_source(task, test, ms.method, source, config.train, run_dir, backbone=backbone,
                          eval_batch_size=config.eval_batch_size, record=record, theta_init=ms.anchor)


def load_z(run_dir: str | Path) -> tuple[torch.Tensor, dict[str, Any]]:
    """The intrinsic vector of a finished subspace-tune run and its config record."""
    run_dir = Path(run_dir)
    if not (run_dir / "scores.json").is_file():
        raise DataError("not a finished subspace-tune run (no scores.json)", run_dir)
    saved = read_json(run_dir / "config.json")
    if "subspace" not in saved:
        raise DataError("not a subspace-tune run (its config.json names no subspace)", run_dir)
    return read_tensors(run_dir / "trainable.safetensors")["z"], saved
