"""Run directories: how a trained theta and its scores are written, found again and resumed.

A run directory holds everything about one training run of a theta (plain tuning, or tuning through a
subspace's up-projection):

    config.json         the complete configuration, the backbone and its weights' SHA-256, data sources
    zero_shot.json      dev/test scores of the frozen backbone and of the initial theta (before training)
    log.jsonl           one line per evaluation: step, mean loss, learning rate, gradient norm, dev score
    checkpoint/         the last training state (for resuming an interrupted run)
    trainable.safetensors   (subspace runs) the trained parameters at the best step, e.g. the intrinsic vector z
    trajectory.safetensors  (subspace runs) the trained parameters at every evaluation (``step<N>.<name>``), so that
                        a transfer can select a step by the transferred result
    theta.safetensors   the best-on-dev theta (and the initial theta), with theta.json describing it
    scores.json         dev and test scores of the best theta, its step, and the zero-shot scores
    predictions/        dev and test predictions of the best theta (JSON lines)

``scores.json`` is written last: a directory without it is unfinished, and running the same command again
resumes it from its checkpoint.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from . import __version__
from .backbones import Backbone
from .deltas import DeltaMethod, FlatParameters
from .errors import ConfigError
from .evaluation import evaluate, evaluate_splits, write_predictions
from .reporting import Reported
from .store import read_json, read_tensors, save_delta, write_json, write_tensors
from .tasks import Example, Task
from .train import TrainConfig, log_to, train

SCORES = "scores.json"
TRAJECTORY = "trajectory.safetensors"


def is_finished(run_dir: Path) -> bool:
    return (Path(run_dir) / SCORES).is_file()


def check_run_dir(run_dir: Path, record: dict[str, Any], *, overwrite: bool) -> None:
    """Make ``run_dir`` ready for a run described by ``record``: deleted first with ``overwrite``; refused when it
    holds a run whose ``config.json`` differs from ``record`` in any of its keys (resuming is only safe for the
    same run)."""
    if run_dir.exists() and overwrite:
        shutil.rmtree(run_dir)
    if (run_dir / "config.json").is_file():
        saved = read_json(run_dir / "config.json")
        differs = [_WHAT.get(key, key) for key, value in record.items() if saved.get(key) != value]
        if differs:
            raise ConfigError(
                f"{run_dir} holds a run with a different {' and '.join(differs)}; choose another --out/--run-name "
                "or pass --overwrite to replace it"
            )


#: How a message names the parts of a run's record.
_WHAT = {"run": "configuration", "subspace": "subspace"}


class ThetaSource:
    """Where a run's theta comes from: a trainable module and how theta is computed from it."""

    trainable: nn.Module
    #: Whether the trained parameters are more than theta itself (then they are saved as trainable.safetensors).
    separate_trainable: bool = True

    def bound(self) -> torch.Tensor | FlatParameters:
        """What to bind during a training step (gradients flow from it to the trainable parameters)."""
        raise NotImplementedError

    def current(self) -> torch.Tensor:
        """The current theta ``[D]``, detached (computed once, then bound for a whole evaluation)."""
        raise NotImplementedError


class DirectTheta(ThetaSource):
    """Plain tuning: theta itself is trained."""

    separate_trainable = False

    def __init__(self, params: FlatParameters):
        self.trainable = params

    def bound(self):
        return self.trainable

    def current(self):
        return self.trainable.theta.detach().clone()


class _Trajectory(log_to):
    """The log of a run whose trainable is more than theta: each evaluation's line, and the trainable's state at
    that evaluation in ``trajectory.safetensors`` (keyed by step, so a resumed run rewrites what it repeats)."""

    def __init__(self, run_dir: Path, source: ThetaSource):
        super().__init__(run_dir / "log.jsonl")
        self.file = run_dir / TRAJECTORY
        self.source = source

    def __call__(self, record: dict) -> None:
        super().__call__(record)
        if "dev" in record:  # the state that was just evaluated
            kept = read_tensors(self.file) if self.file.is_file() else {}
            kept.update({f"step{record['step']}.{k}": v for k, v in self.source.trainable.state_dict().items()})
            write_tensors(self.file, kept)


def trajectory(run_dir: Path) -> dict[int, dict[str, torch.Tensor]]:
    """``{step: trainable state}`` of every evaluation of a subspace run, in step order."""
    states: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in read_tensors(Path(run_dir) / TRAJECTORY).items():
        step, name = key.split(".", 1)
        states.setdefault(int(step.removeprefix("step")), {})[name] = value
    return dict(sorted(states.items()))


def _zero_shot(path: Path, backbone: Backbone, method: DeltaMethod, source: ThetaSource, task: Task,
               test: Sequence[Example], batch_size: int, progress: bool = False) -> dict[str, Any]:
    """Scores of the frozen backbone and of the initial theta (computed once, kept in ``zero_shot.json``)."""
    if path.is_file():
        return read_json(path)
    splits = {name: examples for name, examples in (("dev", task.dev), ("test", test)) if examples}
    frozen = evaluate_splits(backbone, splits, task.metric, batch_size=batch_size, progress=progress)
    start = source.current()
    # A neutral initial theta computes exactly the frozen model: its scores are the frozen ones.
    init = frozen if method.is_neutral(start) else evaluate_splits(
        backbone, splits, task.metric, method=method, theta=start, batch_size=batch_size, progress=progress)
    zero_shot = {"frozen": frozen, "init": dict(init)}
    write_json(path, zero_shot)
    return zero_shot


def write_run_config(run_dir: Path, record: dict[str, Any], backbone: Backbone, method: DeltaMethod, task: Task,
                     test: list[Example]) -> None:
    """A run's ``config.json``: ``record`` (the settings), the backbone, the method and the data it saw."""
    write_json(run_dir / "config.json", {
        "taskspace_version": __version__,
        **record,
        "backbone": {**backbone.describe(), "fingerprint": backbone.fingerprint()},
        "method": method.describe(),
        "data": {"sources": task.sources, "train": len(task.train), "dev": len(task.dev),
                 "test": len(test), "test_total": len(task.test), "metric": task.metric},
    })


def finish_run(run_dir: Path, task: Task, test: list[Example], method: DeltaMethod, theta: torch.Tensor,
               theta_init: torch.Tensor | None, batch_size: int, extra: dict[str, Any], *,
               progress: bool = False) -> dict[str, Any]:
    """Score ``theta`` on dev and test, write the predictions, the delta and ``scores.json`` (last: it marks the
    run finished); returns the scores. ``extra`` joins the scores (how the theta was found)."""
    backbone = method.backbone
    dev_value, dev_preds = evaluate(backbone, task.dev, task.metric, method=method, theta=theta, batch_size=batch_size,
                                    progress=progress, desc="dev")
    scores: dict[str, Any] = {"metric": task.metric, "decode": backbone.decode, "dev": dev_value, "test": None,
                              **extra, "n_dev": len(task.dev), "n_test": len(test), "n_test_total": len(task.test)}
    write_predictions(run_dir / "predictions" / "dev.jsonl", task.dev, dev_preds)
    if test:
        scores["test"], test_preds = evaluate(backbone, test, task.metric, method=method, theta=theta,
                                              batch_size=batch_size, progress=progress, desc="test")
        write_predictions(run_dir / "predictions" / "test.jsonl", test, test_preds)
    save_delta(run_dir / "theta", method, theta, theta_init,
               extra={"task": task.name, "best_step": scores.get("best_step"), "dev": scores["dev"],
                      "test": scores["test"]})
    write_json(run_dir / SCORES, scores)
    return scores


def fit_source(
    task: Task,
    test: Sequence[Example],
    method: DeltaMethod,
    source: ThetaSource,
    train_config: TrainConfig,
    run_dir: Path,
    *,
    backbone: Backbone,
    eval_batch_size: int,
    record: dict[str, Any],
    theta_init: torch.Tensor | None = None,
    evaluate_zero_shot: bool = True,
    keep_checkpoint: bool = False,
) -> dict[str, Any]:
    """Train ``source`` on ``task`` through ``method``; write the run directory (see the module docstring).

    Used by plain tuning and by subspace tuning alike; ``record`` is merged into ``config.json``.
    """
    write_run_config(run_dir, record, backbone, method, task, test)
    bs = eval_batch_size
    zero_shot = (_zero_shot(run_dir / "zero_shot.json", backbone, method, source, task, test, bs,
                            train_config.progress)
                 if evaluate_zero_shot else {})

    def loss_fn(examples: list[Example], targets: list[str]) -> torch.Tensor:
        with method.bind(source.bound()):
            return backbone.loss(backbone.collate(examples, targets)).mean()

    def dev_score() -> float:
        return evaluate(backbone, task.dev, task.metric, method=method, theta=source.current(), batch_size=bs,
                        progress=train_config.progress, desc="dev")[0]

    log = _Trajectory(run_dir, source) if source.separate_trainable else log_to(run_dir / "log.jsonl")
    started = time.time()
    with Reported(log, train_config.report_to, run_dir, record) as reported:
        result = train(source.trainable, loss_fn, task.train, train_config, evaluate=dev_score, run_dir=run_dir,
                       backbone=backbone, log=reported, initial_score=zero_shot.get("init", {}).get("dev"))
    source.trainable.load_state_dict(result.best_state)
    theta = source.current()
    if source.separate_trainable:
        write_tensors(run_dir / "trainable.safetensors", result.best_state)

    scores = finish_run(run_dir, task, test, method, theta, theta_init, bs, {
        "best_step": result.best_step, "steps": result.steps, "stopped_early": result.stopped_early,
        "zero_shot": zero_shot, "train_seconds": round(time.time() - started, 1)}, progress=train_config.progress)
    if not keep_checkpoint:
        shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)  # resume state (optimiser included): not needed now
    return scores
