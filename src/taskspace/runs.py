"""Run directories: how a trained theta and its scores are written, found again and resumed.

A run directory holds everything about one training run of a theta (plain tuning, or tuning through a
subspace's up-projection):

    config.json         the complete configuration, the backbone and its weights' SHA-256, data sources, and
                        (``data_digest``) the SHA-256 of the content of each split the run was trained and scored on
    zero_shot.json      dev/test scores of the frozen backbone and of the initial theta (before training)
    log.jsonl           one line per evaluation: step, mean loss, learning rate, gradient norm, dev score
    checkpoint/         the last training state (for resuming an interrupted run)
    trainable.safetensors   (subspace runs) the trained parameters at the best step, e.g. the intrinsic vector z
    trajectory.safetensors  (subspace runs) the trained parameters at every evaluation (``step<N>.<name>``), so that
                        a transfer can select a step by the transferred result
    theta.safetensors   the best-on-dev theta (and the initial theta), with theta.json describing it
    scores.json         dev and test scores of the best theta, its step, the zero-shot scores and the wall
                        time (``train_seconds``; a run trained in one pass with others, ``bank --batched``,
                        records the pass's time and the number of runs in it as ``trained_together``)
    predictions/        dev and test predictions of the best theta (JSON lines)

``scores.json`` is written last: a directory without it is unfinished, and running the same command again
resumes it from its checkpoint.

A run is the same run wherever its data folder lies: what identifies its data is the digest of each split's content
(train, dev and the test examples it is scored on), so a moved folder keeps its runs and an edited file gives a new
one (a run directory named explicitly that holds a run of other data is refused). A run made before the digests
were recorded cannot be compared on content: it is returned or resumed, as then, only from the data folder it
recorded.
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
from .frozen import frozen_scores
from .reporting import Reported
from .store import read_json, read_tensors, save_delta, write_json, write_tensors
from .tasks import Example, Task
from .tasks.example import examples_digest
from .train import TrainConfig, TrainJob, log_to, train, train_many

SCORES = "scores.json"
TRAJECTORY = "trajectory.safetensors"
#: The key of a run's config.json that holds ``{task: {split: SHA-256}}`` of the data it was trained and scored on.
DATA_DIGEST = "data_digest"


def is_finished(run_dir: Path) -> bool:
    return (Path(run_dir) / SCORES).is_file()


def check_run_dir(run_dir: Path, record: dict[str, Any], *, overwrite: bool, backbone: Backbone | None = None,
                  data: dict[str, dict[str, str]] | None = None) -> None:
    """Make ``run_dir`` ready for a run described by ``record``, trained and scored on ``data`` (``{task:``
    :func:`split_digests` ``}``): deleted first with ``overwrite``; refused when it holds a run whose ``config.json``
    differs from ``record`` in any of its keys, that was trained or scored on other data, or whose backbone had
    other weights or computed in another dtype or input template than ``backbone`` has (resuming, or returning a
    finished run, is only safe for the same run). The data folder's path is compared only for a run that records
    no digests (made before they were recorded)."""
    if run_dir.exists() and overwrite:
        shutil.rmtree(run_dir)
    if (run_dir / "config.json").is_file():
        saved = read_json(run_dir / "config.json")
        by_content = data is not None and DATA_DIGEST in saved
        differs = [_WHAT.get(key, key) for key, value in record.items()
                   if compared(saved.get(key), by_content) != compared(value, by_content)]
        if differs:
            raise ConfigError(
                f"{run_dir} holds a run with a different {' and '.join(differs)}; choose another --out/--run-name "
                "or pass --overwrite to replace it"
            )
        if by_content:
            check_same_data(saved[DATA_DIGEST], data, run_dir)
        if backbone is not None:
            check_same_computation(saved, backbone, run_dir)


def split_digests(task: Task, test: Sequence[Example]) -> dict[str, str]:
    """The SHA-256 of the content of each split a run on ``task`` is trained and scored on: train, dev, and
    ``test``, the test examples it is scored on (the capped subset). Content, not place: a moved data folder, or a
    resampled split drawn again the same way, gives the same digests; an edited label or input gives others."""
    return {"train": examples_digest(task.train), "dev": examples_digest(task.dev), "test": examples_digest(test)}


def compared(settings: Any, by_content: bool) -> Any:
    """Recorded settings as they are compared: without the data folder's path when the data are compared by
    their content (a moved data folder holds the same data)."""
    if by_content and isinstance(settings, dict):
        return {key: value for key, value in settings.items() if key != "data_dir"}
    return settings


def check_same_data(saved: dict[str, dict[str, str]], now: dict[str, dict[str, str]], where: Path, *,
                    what: str = "a run", fix: str = "pass --overwrite to replace it, or choose another "
                                                    "--out/--run-name") -> None:
    """Refuse ``what`` ``where`` holds when it was made on other data than ``now`` (``{task: {split: digest}}``, as
    :func:`split_digests`; only the splits in ``now`` are compared): one line naming each changed split, and
    ``fix``."""
    changed = []
    for task, splits in now.items():
        names = [split for split, digest in splits.items() if (saved.get(task) or {}).get(split) != digest]
        if names:
            changed.append(f"the {' and '.join(names)} split{'s' if len(names) > 1 else ''} of task {task!r}")
    if changed:
        raise ConfigError(f"{where} holds {what} made on other data: {'; '.join(changed)} changed since; {fix}")


def recorded_dtype(saved_config: dict[str, Any]) -> str | None:
    """The dtype an artefact's backbone computed in, as its ``config.json`` records it (None when it does not)."""
    return (saved_config.get("backbone") or {}).get("dtype")


#: Backbone settings that change what a run computes without being among its options when left at their
#: defaults (the default dtype and template depend on the host and the model), and the value a record made before
#: the setting existed stands for (None: not compared; a run recorded before ``truncation`` is resumed or returned
#: whatever the backbone's: it differs only for inputs longer than ``max_input_length``, and reloading the run for
#: evaluate or predict uses the cut it was made with, :func:`taskspace.backbones.recorded_truncation`).
HIDDEN_SETTINGS = {"dtype": None, "template": "plain", "truncation": None}


def check_same_computation(saved_config: dict[str, Any], backbone: Backbone, where: Path) -> None:
    """Refuse to resume or return a run made on other weights, or computed with another dtype or input template,
    than ``backbone`` has, naming the fix. The weights are compared by fingerprint, so two backbones of one name
    (models of your own, wrapped in memory) never share a run."""
    saved = saved_config.get("backbone") or {}
    then = saved.get("fingerprint")
    if then is not None and then != backbone.fingerprint():
        raise ConfigError(f"{where} holds a run of backbone {saved.get('name')!r} with other weights (sha256 "
                          f"{then[:12]}...) than this {backbone.name!r} has ({backbone.fingerprint()[:12]}...); "
                          "choose another --out/--run-name or pass --overwrite to replace it")
    now = backbone.describe()
    for key, before in HIDDEN_SETTINGS.items():
        then = saved.get(key, before)
        if then is not None and then != now[key]:
            raise ConfigError(f"{where} holds a run computed with the backbone's {key} {then}; this backbone's is "
                              f"{now[key]}: pass --backbone-opt {key}={then} to resume or return it, or choose "
                              "another --out/--run-name")


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
    """Scores of the frozen backbone (computed once per exact computation, see :mod:`taskspace.frozen`) and of
    the initial theta, kept in ``zero_shot.json``."""
    if path.is_file():
        return read_json(path)
    splits = {name: examples for name, examples in (("dev", task.dev), ("test", test)) if examples}
    frozen = frozen_scores(backbone, splits, task.metric, batch_size=batch_size, progress=progress)
    start = source.current()
    # A neutral initial theta computes exactly the frozen model: its scores are the frozen ones.
    init = frozen if method.is_neutral(start) else evaluate_splits(
        backbone, splits, task.metric, method=method, theta=start, batch_size=batch_size, progress=progress)
    zero_shot = {"frozen": frozen, "init": dict(init)}
    write_json(path, zero_shot)
    return zero_shot


def write_run_config(run_dir: Path, record: dict[str, Any], backbone: Backbone, method: DeltaMethod, task: Task,
                     test: list[Example]) -> None:
    """A run's ``config.json``: ``record`` (the settings), the backbone, the method and the data it saw (where
    from, how many, and the digest of each split's content)."""
    write_json(run_dir / "config.json", {
        "taskspace_version": __version__,
        **record,
        "backbone": {**backbone.describe(), "fingerprint": backbone.fingerprint()},
        "method": method.describe(),
        "data": {"sources": task.sources, "train": len(task.train), "dev": len(task.dev),
                 "test": len(test), "test_total": len(task.test), "metric": task.metric,
                 "inline_choices": task.inline_choices},
        DATA_DIGEST: {task.name: split_digests(task, test)},
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


class PreparedRun:
    """One run being fitted: what :func:`fit_source` sets up before training (the run's config, the zero-shot
    scores, its log) and completes after it (scores, predictions, theta)."""

    def __init__(self, task: Task, test: Sequence[Example], method: DeltaMethod, source: ThetaSource,
                 train_config: TrainConfig, run_dir: Path, *, backbone: Backbone, eval_batch_size: int,
                 record: dict[str, Any], theta_init: torch.Tensor | None, evaluate_zero_shot: bool,
                 keep_checkpoint: bool):
        self.task, self.test, self.method, self.source = task, list(test), method, source
        self.train_config, self.run_dir, self.backbone = train_config, run_dir, backbone
        self.eval_batch_size, self.record, self.theta_init = eval_batch_size, record, theta_init
        self.keep_checkpoint = keep_checkpoint
        write_run_config(run_dir, record, backbone, method, task, self.test)
        self.zero_shot = (_zero_shot(run_dir / "zero_shot.json", backbone, method, source, task, self.test,
                                     eval_batch_size, train_config.progress)
                          if evaluate_zero_shot else {})
        self.log = _Trajectory(run_dir, source) if source.separate_trainable else log_to(run_dir / "log.jsonl")
        self.started = time.time()

    @property
    def initial_dev(self) -> float | None:
        return self.zero_shot.get("init", {}).get("dev")

    def dev_score(self) -> float:
        return evaluate(self.backbone, self.task.dev, self.task.metric, method=self.method,
                        theta=self.source.current(), batch_size=self.eval_batch_size,
                        progress=self.train_config.progress, desc="dev", settle=True)[0]

    def reported(self) -> Reported:
        return Reported(self.log, self.train_config.report_to, self.run_dir, self.record)

    def complete(self, result, *, together: int = 1) -> dict[str, Any]:
        """Score and write the trained run; ``together``: how many runs shared its training pass (its
        ``train_seconds`` are then the pass's)."""
        self.source.trainable.load_state_dict(result.best_state)
        theta = self.source.current()
        if self.source.separate_trainable:
            write_tensors(self.run_dir / "trainable.safetensors", result.best_state)
        scores = finish_run(self.run_dir, self.task, self.test, self.method, theta, self.theta_init,
                            self.eval_batch_size, {
                                "best_step": result.best_step, "steps": result.steps,
                                "stopped_early": result.stopped_early, "zero_shot": self.zero_shot,
                                "train_seconds": round(time.time() - self.started, 1),
                                **({"trained_together": together} if together > 1 else {})},
                            progress=self.train_config.progress)
        if not self.keep_checkpoint:  # resume state (optimiser included): not needed now
            shutil.rmtree(self.run_dir / "checkpoint", ignore_errors=True)
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
    fit = PreparedRun(task, test, method, source, train_config, run_dir, backbone=backbone,
                      eval_batch_size=eval_batch_size, record=record, theta_init=theta_init,
                      evaluate_zero_shot=evaluate_zero_shot, keep_checkpoint=keep_checkpoint)

    def loss_fn(examples: list[Example], targets: list[str]) -> torch.Tensor:
        with method.bind(source.bound()):
            return backbone.loss(backbone.collate(examples, targets)).mean()

    with fit.reported() as reported:
        result = train(source.trainable, loss_fn, task.train, train_config, evaluate=fit.dev_score, run_dir=run_dir,
                       backbone=backbone, log=reported, initial_score=fit.initial_dev)
    return fit.complete(result)


def joint_theta_loss(method: DeltaMethod, backbone: Backbone, thetas: Sequence[FlatParameters]):
    """The ``joint_loss`` of :func:`taskspace.train.train_many` for several thetas of one method: every job's batch
    in one forward pass, each example bound to its own job's theta (per-example binding: the jobs' thetas as the
    rows of one ``[K, D]`` theta and each example's row, so LoRA computes each theta once over its examples), and
    each job's mean loss."""
    if not method.supports_per_example:
        raise ConfigError(f"{method.name} takes no per-example theta: its runs cannot share a pass (--batched 1)")

    def joint_loss(items):
        examples, targets, flats, rows, spans = [], [], [], [], []
        for k, batch, batch_targets in items:
            spans.append((len(examples), len(examples) + len(batch)))
            examples += batch
            targets += batch_targets
            rows += [len(flats)] * len(batch)
            flats.append(torch.cat([p.reshape(-1) for p in thetas[k].slices]))  # differentiable in its slices
        theta = torch.stack(flats)
        with method.bind(theta, rows=torch.tensor(rows, device=theta.device)):
            per_example = backbone.loss(backbone.collate(examples, targets))
        return [per_example[a:b].mean() for a, b in spans]

    return joint_loss


def fit_thetas_together(fits: Sequence[PreparedRun], backbone: Backbone) -> list[dict[str, Any]]:
    """Train the thetas of several runs of one method in one pass (:func:`taskspace.train.train_many`): each step
    runs every run's batch in one forward pass, each example with its own run's theta (per-example binding); each
    run ends as it would trained alone (up to float rounding) and is completed like one."""
    from contextlib import ExitStack

    joint_loss = joint_theta_loss(fits[0].method, backbone, [fit.source.trainable for fit in fits])
    with ExitStack() as stack:
        logs = [stack.enter_context(fit.reported()) for fit in fits]
        jobs = [TrainJob(fit.source.trainable, fit.task.train, fit.train_config, evaluate=fit.dev_score,
                         run_dir=fit.run_dir, log=log, initial_score=fit.initial_dev) for fit, log in zip(fits, logs)]
        results = train_many(jobs, joint_loss, backbone=backbone)
    return [fit.complete(result, together=len(fits)) for fit, result in zip(fits, results)]
