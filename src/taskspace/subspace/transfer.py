"""Transfer (UDT): the z found with a source method is decoded by every other method's up-projection, without
further training, and evaluated."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError
from ..evaluation import capped_test_split, evaluate_splits
from ..tasks import load_task
from .space import Subspace
from .tune import load_z, subspace_id


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
        out[target] = evaluate_splits(backbone, {"dev": task.dev, "test": test}, task.metric, method=ms.method,
                                      theta=theta, batch_size=run["eval_batch_size"])
    return out
