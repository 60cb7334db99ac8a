"""Tuning inside a subspace, and transferring what was found to other methods.

**Subspace tuning** (IPT's intrinsic subspace tuning, UDT's subspace optimisation, the random baselines): a fresh
intrinsic vector ``z`` in R^d is trained through one method's frozen up-projection, ``theta = anchor + up(z)``;
only the d entries of z change. The run directory is a tune run directory (the decoded theta is saved like any
delta, and ``trainable.safetensors`` holds z).

**Transfer** (UDT): the z found with a source method is decoded by every other method's up-projection, without
further training, and evaluated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, DataError
from ..store import exclusive, read_json, read_tensors
from ..tasks import load_task
from ..train import TrainConfig
from ..tuning import capped_test_split, evaluate, fit
from .space import SUBSPACE_JSON, ProjectedTheta, Subspace


@dataclass
class SubspaceTuneConfig:
    task: str
    method: str
    data_dir: str
    k: int = 16
    data_seed: int = 100
    seed: int = 0
    z_init: str = "normal"
    z_std: float = 0.02
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-2, steps=300, eval_every=50))
    eval_batch_size: int = 32
    max_test_examples: int | None = 500
    test_sample_seed: int = 0

    def identity(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["train"].pop("progress")
        return d


def initial_z(d: int, how: str, std: float, seed: int) -> torch.Tensor:
    """The starting intrinsic vector: N(0, std²) (IPT's IST) or zeros (a random subspace around the anchor)."""
    if how == "normal":
        return torch.randn(d, generator=torch.Generator().manual_seed(seed)) * std
    if how == "zeros":
        return torch.zeros(d)
    raise ConfigError(f"z_init={how!r}: expected 'normal' or 'zeros'")


def subspace_id(folder: str | Path) -> dict[str, str]:
    """How a run names its subspace: folder, recipe and a hash of its description."""
    path = Path(folder) / SUBSPACE_JSON
    meta = read_json(path)
    return {"path": str(Path(folder)), "recipe": meta["recipe"],
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def subspace_tune(space: Subspace, folder: str | Path, config: SubspaceTuneConfig, run_dir: str | Path, *,
                  overwrite: bool = False) -> dict[str, Any]:
    """Train a fresh z for ``config.task`` through ``config.method``'s up-projection of ``space`` (saved in
    ``folder``); returns the scores. Resumes an interrupted run; returns a finished one after checking it."""
    run_dir = Path(run_dir)
    record = {"run": config.identity(), "subspace": subspace_id(folder), "d": space.d}
    if run_dir.exists() and overwrite:
        shutil.rmtree(run_dir)
    if (run_dir / "config.json").is_file():
        saved = read_json(run_dir / "config.json")
        if saved.get("run") != record["run"] or saved.get("subspace") != record["subspace"]:
            raise ConfigError(f"{run_dir} holds a run with another configuration or subspace; use another folder "
                              "or --overwrite")
    ms = space[config.method]
    backbone = space.backbone
    task = load_task(config.task, config.data_dir, k=config.k, seed=config.data_seed)
    backbone.check_task(task.info.has_options, task.name)
    if (run_dir / "scores.json").is_file():
        z = read_tensors(run_dir / "trainable.safetensors")["z"]
        if z.shape != (space.d,):
            raise DataError(f"z has shape {tuple(z.shape)}, the subspace has d = {space.d}", run_dir)
        return read_json(run_dir / "scores.json")
    z0 = initial_z(space.d, config.z_init, config.z_std, config.seed).to(backbone.device)
    source = ProjectedTheta(ms, z0)
    test = capped_test_split(task, config.max_test_examples, config.test_sample_seed)
    with exclusive(run_dir):  # creates it; a second process on the same run is refused
        return fit(task, test, ms.method, source, config.train, run_dir, backbone=backbone,
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


def transfer(space: Subspace, folder: str | Path, run_dir: str | Path, *, targets: list[str] | None = None,
             data_dir: str | None = None) -> dict[str, dict[str, float | None]]:
    """Decode a subspace-tune run's z with every target method's up-projection; dev and test scores per target.

    The source method (the one z was trained through) is included: its row is the subspace optimisation result.
    """
    z, saved = load_z(run_dir)
    if saved["subspace"]["sha256"] != subspace_id(folder)["sha256"]:
        raise ConfigError(f"{run_dir} was tuned in another subspace than {folder}")
    run = saved["run"]
    backbone = space.backbone
    task = load_task(run["task"], data_dir or run["data_dir"], k=run["k"], seed=run["data_seed"])
    test = capped_test_split(task, run["max_test_examples"], run["test_sample_seed"])
    z = z.to(backbone.device)
    out: dict[str, dict[str, float | None]] = {}
    for target in targets or list(space.methods):
        ms = space[target]
        with torch.no_grad():
            theta = ms.theta(z)
        scores: dict[str, float | None] = {"dev": None, "test": None}
        for split, examples in (("dev", task.dev), ("test", test)):
            if examples:
                scores[split] = evaluate(backbone, examples, task.metric, method=ms.method, theta=theta,
                                         batch_size=run["eval_batch_size"])[0]
        out[target] = scores
    return out
