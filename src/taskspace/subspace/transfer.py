"""Transfer (UDT): the z found with a source method is decoded by every other method's up-projection, without
further training, and evaluated; the step whose z is transferred is chosen by the transferred result on dev (the
paper) or is the source method's best step (the authors' code). Every score is kept in the cache folder
(:func:`taskspace.frozen.kept_score`): a transfer interrupted, or made again, computes only what it had not."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError, DataError
from ..evaluation import capped_test_split
from ..frozen import kept_scores
from ..runs import TRAJECTORY, trajectory
from ..store import read_json
from ..tasks import load_task_as
from .space import Subspace
from .tune import load_z, same_subspace, subspace_id


SELECTIONS = ("paper", "source")


def transfer(space: Subspace, folder: str | Path, run_dir: str | Path, *, targets: list[str] | None = None,
             data_dir: str | None = None, selection: str = "paper") -> dict[str, dict[str, float | int | None]]:
    """Decode a subspace-tune run's z with every target method's up-projection; dev and test scores per target.

    ``selection="paper"``: for each target, the z of the run's evaluation step whose transferred result is best on
    dev (the paper's selection; ties go to the earlier step). ``"source"``: the z that was best on dev for the
    source method (the authors' code). The source method itself (its row is the subspace optimisation result)
    always keeps the run's own best step. Each target's entry names the ``step`` whose z it decodes.
    """
    if selection not in SELECTIONS:
        raise ConfigError(f"--selection {selection!r}: expected one of {', '.join(SELECTIONS)}")
    best_z, saved = load_z(run_dir)
    if not same_subspace(saved["subspace"], subspace_id(folder)):
        raise ConfigError(f"{run_dir} was tuned in another subspace than {folder}")
    run = saved["run"]
    backbone = space.backbone
    task = load_task_as(run, data_dir=data_dir)
    test = capped_test_split(task, run["max_test_examples"], run["test_sample_seed"])
    best_step = read_json(Path(run_dir) / "scores.json")["best_step"]
    steps = {best_step: best_z}
    if selection == "paper":
        if not (Path(run_dir) / TRAJECTORY).is_file():
            raise DataError(f"no {TRAJECTORY} (the run was made before taskspace kept one): tune it again, or "
                            "transfer with --selection source", run_dir)
        steps = {step: state["z"] for step, state in trajectory(Path(run_dir)).items()}
    bs = run["eval_batch_size"]

    def scores_at(ms, z: torch.Tensor, splits) -> dict[str, float | None]:
        with torch.no_grad():
            theta = ms.theta(z.to(backbone.device))
        return kept_scores(backbone, splits, task.metric, method=ms.method, theta=theta, batch_size=bs)

    out: dict[str, dict[str, float | int | None]] = {}
    for target in targets or list(space.methods):
        ms = space[target]
        if target == run["method"] or selection == "source":
            out[target] = {**scores_at(ms, best_z, {"dev": task.dev, "test": test}), "step": best_step}
            continue
        dev = {step: scores_at(ms, z, {"dev": task.dev})["dev"] for step, z in steps.items()}
        chosen = max(dev, key=lambda step: (dev[step], -step))  # the best dev score, then the earliest step
        out[target] = {"dev": dev[chosen], **scores_at(ms, steps[chosen], {"test": test}), "step": chosen}
    return out
