"""Subspace tuning runs: a method tuned through one subspace on every task and seed, each test score recorded under
a key (IST, tuning in a random subspace, UDT's subspace optimisation), and the run folders it writes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from taskspace.subspace import Subspace, SubspaceTuneConfig, subspace_tune

from recipe_common import fmt, train_config

if TYPE_CHECKING:
    from smol import Runner


def tune_in(run: Runner, key: str, space: Subspace, folder: Path, tasks: list[str], method: str, train: dict, *,
            seeds: list[int] | None = None, data_seed: int | None = None, z_init: str = "normal",
            z_std: float = 0.02, resample_k: int | None = None) -> None:
    """Subspace tuning of ``method`` on every task and seed, recorded under ``key`` (with ``resample_k``, on
    train / dev resampled at that K from the pooled files; an unseen task scored as the reference is, with the
    recipe's ``pool_test``)."""
    data_seed = run.cfg["data_seed"] if data_seed is None else data_seed
    for task in tasks:
        for seed in seeds or run.seeds:
            config = SubspaceTuneConfig(task=task, method=method, data_dir=run.data_dir, data_seed=data_seed,
                                        seed=seed, z_init=z_init, z_std=z_std, train=train_config(train),
                                        max_test_examples=run.cfg["max_test_examples"],
                                        resample=resample_k is not None, resample_k=resample_k,
                                        pool_test=run.cfg.get("pool_test", False) and task in run.unseen)
            scores = subspace_tune(space, folder, config,
                                   folder / "runs" / f"{task}-d{data_seed}-{method}-s{seed}")
            run.record(key, task, seed, scores)
            print(f"    {task:34s} {method:8s} s{seed} test {fmt(scores['test'])}", flush=True)
    run.save()


def ist_runs(run: Runner, folder: Path, tasks: list[str], method: str, seeds: list[int] | None = None) -> list[Path]:
    """The run folders ``tune_in`` wrote for ``tasks`` and ``seeds`` through the subspace in ``folder``."""
    return [folder / "runs" / f"{t}-d{run.cfg['data_seed']}-{method}-s{s}" for t in tasks
            for s in (seeds or run.seeds)]
