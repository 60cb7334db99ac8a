"""Tune one delta method on one task: the ``taskspace tune`` recipe.

A run directory holds everything about one (task, method, backbone, seed) run:

    config.json         the complete configuration, the backbone and its weights' SHA-256, data sources
    zero_shot.json      dev/test scores of the frozen backbone and of the initial theta (before training)
    log.jsonl           one line per evaluation: step, mean loss, learning rate, gradient norm, dev score
    checkpoint/         the last training state (for resuming an interrupted run)
    trainable.safetensors   (subspace runs) the trained parameters at the best step, e.g. the intrinsic vector z
    theta.safetensors   the best-on-dev theta (and the initial theta), with theta.json describing it
    scores.json         dev and test scores of the best theta, its step, and the zero-shot scores
    predictions/        dev and test predictions of the best theta (JSON lines)

Running the same command again resumes an unfinished run, and returns a finished one after checking that its
files are complete and were made with the same configuration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from . import __version__
from .backbones import Backbone, load_backbone
from .deltas import DeltaMethod, FlatParameters, build_method, method_class
from .errors import ConfigError, DataError
from .store import exclusive, load_delta, read_json, save_delta, write_json, write_tensors
from .tasks import Example, Task, compute_metric, load_task
from .train import TrainConfig, log_to, train

#: Learning rates that work for each method on the default backbone (few-shot, batch 8, ~300 steps).
DEFAULT_LR = {"prompt": 3e-2, "prefix": 3e-3, "lora": 2e-3, "adapter": 2e-3, "bitfit": 5e-3, "finetune": 2e-5}


@dataclass
class TuneConfig:
    task: str
    method: str
    data_dir: str
    method_options: dict[str, Any] = field(default_factory=dict)
    #: The task's metric: needed for a task outside the catalog, else it replaces the catalog's.
    metric: str | None = None
    backbone: str = "smollm2"
    backbone_options: dict[str, Any] = field(default_factory=dict)
    k: int = 16
    data_seed: int = 100
    resample: bool = False
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    eval_batch_size: int = 32
    max_test_examples: int | None = 500
    test_sample_seed: int = 0
    #: Evaluate the frozen backbone and the initial theta before training (zero_shot.json).
    zero_shot: bool = True
    #: Start from a saved delta (``<run>/theta``, e.g. an IST solution) instead of the method's initialisation.
    init_from: str | None = None
    #: Keep the last training state (checkpoint/, with the optimiser's) after the run finished; without it a finished
    #: run keeps what evaluation and transfer need (theta, scores, predictions, log).
    keep_checkpoint: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["train"] = self.train.to_dict()
        return d

    def identity(self) -> dict[str, Any]:
        """The settings that define the run's results (not how progress is shown)."""
        d = self.to_dict()
        d["train"].pop("progress")
        d.pop("keep_checkpoint")
        return d


@dataclass
class RunResult:
    run_dir: Path
    scores: dict[str, Any]
    theta: torch.Tensor
    method: DeltaMethod
    task: Task


# ----------------------------------------------------------------------------------------------------------------
# Evaluation


def predict(backbone: Backbone, examples: Sequence[Example], *, method: DeltaMethod | None = None,
            theta: torch.Tensor | None = None, batch_size: int = 32) -> list[str]:
    """Predictions for ``examples`` under ``method`` bound to ``theta`` (the frozen backbone if no method)."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input))  # less padding per batch
    out: list[str] = [""] * len(examples)
    bound = method.bind(theta) if method is not None else contextlib.nullcontext()
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad(), bound:
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                for i, p in zip(idx, backbone.predict(backbone.collate([examples[j] for j in idx]))):
                    out[i] = p
    finally:
        backbone.train(was_training)
    return out


def score(metric: str, examples: Sequence[Example], predictions: Sequence[str]) -> float:
    return compute_metric(metric, predictions, [e.references for e in examples])


def evaluate(backbone: Backbone, examples: Sequence[Example], metric: str, *, method: DeltaMethod | None = None,
             theta: torch.Tensor | None = None, batch_size: int = 32) -> tuple[float, list[str]]:
    preds = predict(backbone, examples, method=method, theta=theta, batch_size=batch_size)
    return score(metric, examples, preds), preds


def capped_test_split(task: Task, limit: int | None, seed: int) -> list[Example]:
    """At most ``limit`` test examples, a seeded random subset kept in file order (test files can be sorted)."""
    if limit is None or len(task.test) <= limit:
        return list(task.test)
    keep = sorted(random.Random(seed).sample(range(len(task.test)), limit))
    return [task.test[i] for i in keep]


# ----------------------------------------------------------------------------------------------------------------


def default_run_name(config: TuneConfig) -> str:
    """``<task>-<method>-<backbone>-d<data seed>-s<seed>-<hash>``: the hash (8 hex digits) covers every setting that
    defines the run's results but the data folder, so runs of different settings (a sweep of --lr or --steps)
    never share a directory, and the same command always finds its own run again."""
    backbone = Path(config.backbone).name if Path(config.backbone).exists() else config.backbone.replace("/", "_")
    data = f"r{config.data_seed}" if config.resample else f"d{config.data_seed}"
    identity = config.identity()
    identity.pop("data_dir")
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    return f"{config.task}-{config.method}-{backbone}-{data}-s{config.seed}-{digest}"


def _write_predictions(path: Path, examples: Sequence[Example], predictions: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for e, p in zip(examples, predictions):
            f.write(json.dumps({"input": e.input, "prediction": p, "references": list(e.references)}) + "\n")
    tmp.replace(path)


def _check_finished(run_dir: Path, method: DeltaMethod) -> tuple[dict[str, Any], torch.Tensor]:
    """The scores and theta of a finished run, its theta read and checked (never assumed)."""
    return read_json(run_dir / "scores.json"), load_delta(run_dir / "theta", method)[0]


def tune(
    config: TuneConfig,
    run_dir: str | Path,
    *,
    backbone: Backbone | None = None,
    overwrite: bool = False,
) -> RunResult:
    """Tune ``config.method`` on ``config.task``; see the module docstring for what the run directory holds."""
    run_dir = Path(run_dir)
    method_class(config.method)  # fail early on an unknown method name ...
    config.train.validate()  # ... or training settings, before any model is loaded
    if config.max_test_examples is not None and config.max_test_examples < 1:
        raise ConfigError(f"--max-test-examples {config.max_test_examples}: expected a positive number, or none")
    if config.eval_batch_size < 1:
        raise ConfigError(f"--eval-batch-size {config.eval_batch_size}: expected a positive number")
    # Everything that can be checked is checked before the run directory is touched, so that bad input leaves
    # nothing behind.
    task = load_task(config.task, config.data_dir, k=config.k, seed=config.data_seed, resample=config.resample,
                     metric=config.metric)
    if backbone is None:
        backbone = load_backbone(config.backbone, **config.backbone_options)
    backbone.check_task(task.info.has_options, task.name)
    method = build_method(config.method, backbone, config.method_options)
    if run_dir.exists() and overwrite:
        shutil.rmtree(run_dir)
    if (run_dir / "config.json").is_file():
        saved = read_json(run_dir / "config.json")
        if saved.get("run") != config.identity():
            raise ConfigError(
                f"{run_dir} holds a run with a different configuration; choose another --out/--run-name or pass "
                "--overwrite to replace it"
            )
    if config.init_from is not None:
        theta_init = load_delta(config.init_from, method)[0]
    else:
        theta_init = method.init(torch.Generator(device="cpu").manual_seed(config.seed))
    with exclusive(run_dir):  # creates it; a second process on the same run is refused
        if (run_dir / "scores.json").is_file():
            scores, theta = _check_finished(run_dir, method)
            return RunResult(run_dir, scores, theta, method, task)
        test = capped_test_split(task, config.max_test_examples, config.test_sample_seed)
        source = DirectTheta(FlatParameters(theta_init, method.layout))
        scores = fit(task, test, method, source, config.train, run_dir, backbone=backbone,
                     eval_batch_size=config.eval_batch_size, record={"run": config.identity()},
                     theta_init=theta_init, evaluate_zero_shot=config.zero_shot,
                     keep_checkpoint=config.keep_checkpoint)
    return RunResult(run_dir, scores, source.current(), method, task)  # the trainable holds the best state


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


def fit(
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
    write_json(run_dir / "config.json", {
        "taskspace_version": __version__,
        **record,
        "backbone": {**backbone.describe(), "fingerprint": backbone.fingerprint()},
        "method": method.describe(),
        "data": {"sources": task.sources, "train": len(task.train), "dev": len(task.dev),
                 "test": len(test), "test_total": len(task.test), "metric": task.metric},
    })
    bs = eval_batch_size
    zs_path = run_dir / "zero_shot.json"
    if not evaluate_zero_shot:
        zero_shot: dict[str, Any] = {}
    elif zs_path.is_file():
        zero_shot = read_json(zs_path)
    else:
        zero_shot = {"frozen": {}, "init": {}}
        start_theta = source.current()
        neutral = method.is_neutral(start_theta)  # then the initial theta computes exactly the frozen model
        for split, examples in (("dev", task.dev), ("test", test)):
            if not examples:
                continue
            zero_shot["frozen"][split] = evaluate(backbone, examples, task.metric, batch_size=bs)[0]
            zero_shot["init"][split] = zero_shot["frozen"][split] if neutral else evaluate(
                backbone, examples, task.metric, method=method, theta=start_theta, batch_size=bs
            )[0]
        write_json(zs_path, zero_shot)

    def loss_fn(examples: list[Example], targets: list[str]) -> torch.Tensor:
        with method.bind(source.bound()):
            return backbone.loss(backbone.collate(examples, targets)).mean()

    def dev_score() -> float:
        return evaluate(backbone, task.dev, task.metric, method=method, theta=source.current(), batch_size=bs)[0]

    started = time.time()
    result = train(source.trainable, loss_fn, task.train, train_config, evaluate=dev_score, run_dir=run_dir,
                   backbone=backbone, log=log_to(run_dir / "log.jsonl"),
                   initial_score=zero_shot.get("init", {}).get("dev"))
    source.trainable.load_state_dict(result.best_state)
    theta = source.current()
    if source.separate_trainable:
        write_tensors(run_dir / "trainable.safetensors", result.best_state)

    dev_value, dev_preds = evaluate(backbone, task.dev, task.metric, method=method, theta=theta, batch_size=bs)
    scores: dict[str, Any] = {"metric": task.metric, "decode": backbone.decode, "dev": dev_value, "test": None,
                              "best_step": result.best_step, "steps": result.steps,
                              "stopped_early": result.stopped_early, "zero_shot": zero_shot,
                              "train_seconds": round(time.time() - started, 1),
                              "n_dev": len(task.dev), "n_test": len(test), "n_test_total": len(task.test)}
    _write_predictions(run_dir / "predictions" / "dev.jsonl", task.dev, dev_preds)
    if test:
        scores["test"], test_preds = evaluate(backbone, test, task.metric, method=method, theta=theta, batch_size=bs)
        _write_predictions(run_dir / "predictions" / "test.jsonl", test, test_preds)
    save_delta(run_dir / "theta", method, theta, theta_init,
               extra={"task": task.name, "best_step": result.best_step, "dev": scores["dev"], "test": scores["test"]})
    write_json(run_dir / "scores.json", scores)  # written last: marks the run finished
    if not keep_checkpoint:
        shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)  # resume state (optimiser included): not needed now
    return scores


def load_run(run_dir: str | Path, *, backbone: Backbone | None = None,
             data_dir: str | None = None) -> tuple[TuneConfig, Task, DeltaMethod, torch.Tensor, dict[str, Any]]:
    """Rebuild a finished run: its config, task, method (on ``backbone``, loaded if not given), theta, scores."""
    run_dir = Path(run_dir)
    saved = read_json(run_dir / "config.json")
    if not (run_dir / "scores.json").is_file():
        raise DataError("the run is not finished (no scores.json); run the same command again to resume it", run_dir)
    run = dict(saved.get("run") or {})
    unknown = sorted(set(run) - {f.name for f in dataclasses.fields(TuneConfig)})
    if not run or unknown:
        raise DataError("not a `taskspace tune` run (" + (f"its settings include {unknown[0]!r}" if unknown else
                        "no run settings") + "); `taskspace evaluate` re-scores tune runs", run_dir / "config.json")
    train_cfg = TrainConfig(**run.pop("train"))
    config = TuneConfig(**run, train=train_cfg)
    if data_dir is not None:
        config.data_dir = data_dir
    if backbone is None:
        backbone = load_backbone(config.backbone, **config.backbone_options)
    method = build_method(config.method, backbone, config.method_options)
    theta, _, _ = load_delta(run_dir / "theta", method)
    task = load_task(config.task, config.data_dir, k=config.k, seed=config.data_seed, resample=config.resample,
                     metric=config.metric)
    return config, task, method, theta, read_json(run_dir / "scores.json")


def reevaluate(run_dir: str | Path, *, backbone: Backbone | None = None, data_dir: str | None = None) -> dict[str, float]:
    """Evaluate a finished run's saved theta again on dev and test (the same test subset)."""
    config, task, method, theta, _ = load_run(run_dir, backbone=backbone, data_dir=data_dir)
    out = {}
    test = capped_test_split(task, config.max_test_examples, config.test_sample_seed)
    for split, examples in (("dev", task.dev), ("test", test)):
        if examples:
            out[split] = evaluate(method.backbone, examples, task.metric, method=method, theta=theta,
                                  batch_size=config.eval_batch_size)[0]
    return out
