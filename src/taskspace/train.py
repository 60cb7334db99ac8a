"""One training loop for every trainable thing in taskspace.

``train`` optimises the parameters of any ``nn.Module`` (a delta vector theta, an intrinsic vector z, a
projection) for a loss computed on batches of examples. It provides AdamW / Adafactor, warm-up with linear decay
or constant schedules, gradient clipping, evaluation every N steps with best-on-dev selection, early stopping,
seeded and resumable data order, gradient accumulation over micro-batches, and a progress bar. With a ``run_dir``
it checkpoints after every evaluation (:mod:`taskspace.checkpoint`: safetensors + JSON, the trainable, the
optimiser, and the CPU and CUDA random number generators) and an interrupted run resumes from the last checkpoint
(saying so, with its step) and reproduces the uninterrupted run exactly; Ctrl-C raises
:class:`taskspace.errors.Interrupted`, which names the step saved. In a torch.distributed process group each step's
batch is split over the processes and the gradients summed (data parallelism, :mod:`taskspace.parallel`).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from .checkpoint import Checkpoint, interrupted, optimizer_from_files, restore_rng
from .config import Config, at_least, non_negative, option, positive
from .errors import ConfigError, TaskspaceError
from .microbatch import backward, micro_batch_share, once_per_step  # noqa: F401 (were defined here)
from .optim import OPTIMIZERS, SCHEDULES, grad_norm, make_optimizer, make_scheduler
from .parallel import all_reduce_sum_, broadcast_object, group
from .store import append_jsonl, write_text
from .tasks.example import Example, examples_digest

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig(Config):
    """How a trainable is optimised: steps, batches, optimiser, schedule, evaluation and early stopping."""

    steps: int = option(300, "optimiser steps", check=at_least(1))
    batch_size: int = option(8, "training examples per step", check=at_least(1))
    lr: float | None = option(1e-3, "learning rate (none: the default of what is trained, e.g. the method's)",
                              check=positive("learning rate"), nullable=True)
    optimizer: str = option("adamw", "optimiser", choices=OPTIMIZERS)
    weight_decay: float = option(0.0, "decoupled weight decay", check=non_negative)
    schedule: str = option("linear", "after warm-up: linear decay to 0, or constant", choices=SCHEDULES)
    warmup_steps: int = option(0, "steps of linear warm-up from 0")
    warmup_fraction: float | None = option(
        None, "linear warm-up over this fraction of --steps instead of --warmup-steps (IPT's code: 0.06)",
        check=lambda v: None if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
        else "a fraction between 0 and 1", nullable=True, since="0.2")
    max_grad_norm: float | None = option(1.0, "gradient clipping by global norm (none: off)",
                                         check=positive("number"), nullable=True)
    eval_every: int = option(50, "evaluate on dev every N steps", check=at_least(1))
    patience: int | None = option(None, "stop after N evaluations without a better dev score (none: never)",
                                  check=at_least(1))
    seed: int = option(0, "seed of the data order")
    select_initial: bool = option(True, "the untrained state (step 0) competes in the best-on-dev selection, so that "
                                        "training never returns a state worse on dev than its start (off: only "
                                        "trained states, as the papers' code selects)", since="0.2")
    micro_batch_size: int | None = option(
        None, "gradient accumulation: split each step's batch into micro-batches of at most N examples, one backward "
        "pass each, weighted by their share of the batch (the same step as one pass, in less memory; none: one pass)",
        check=at_least(1), nullable=True, runtime=True)
    progress: bool = option(True, "a progress bar", runtime=True)
    report_to: str = option("none", "also send the training curves to tensorboard (<run>/tensorboard) or wandb",
                            choices=("none", "tensorboard", "wandb"), runtime=True)

    def check(self) -> None:
        if not 0 <= self.warmup_steps <= self.steps:
            raise ConfigError(f"--warmup-steps {self.warmup_steps}: expected between 0 and --steps {self.steps}")
        if self.warmup_fraction is not None and self.warmup_steps:
            raise ConfigError(f"--warmup-fraction {self.warmup_fraction} and --warmup-steps {self.warmup_steps}: "
                              "expected one of them (--warmup-fraction none, or --warmup-steps 0)")

    def warmup(self) -> int:
        """The steps of linear warm-up: ``warmup_fraction`` of ``steps`` (rounded) when given, else
        ``warmup_steps``."""
        if self.warmup_fraction is not None:
            return round(self.warmup_fraction * self.steps)
        return self.warmup_steps

    def resume_key(self) -> str:
        """What must not change between an interrupted run and its resumption (progress display may)."""
        return json.dumps(self.identity(), sort_keys=True)


@dataclass
class TrainResult:
    best_step: int | None
    best_score: float | None
    best_state: dict[str, torch.Tensor]
    last_state: dict[str, torch.Tensor]
    steps: int
    stopped_early: bool
    resumed_from: int | None
    history: list[dict] = field(default_factory=list)


class TrainingError(TaskspaceError):
    """Training cannot continue (e.g. the loss became NaN)."""


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The examples of ``step``: epoch-wise seeded permutations, so any step's batch can be recomputed."""
    per_epoch = math.ceil(n / batch_size)
    epoch, j = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return perm[j * batch_size : (j + 1) * batch_size].tolist()


def choose_targets(examples: Sequence[Example], seed: int, step: int) -> list[str]:
    """One reference per example (SPEC §1: training samples one reference at random), reproducibly per step."""
    rng = random.Random(f"{seed}:{step}")
    return [e.references[0] if len(e.references) == 1 else rng.choice(e.references) for e in examples]


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _check_dtype(backbone: nn.Module | None) -> None:
    if backbone is not None and getattr(backbone, "dtype", None) == torch.float16:
        raise ConfigError("dtype=float16: training through float16 weights needs loss scaling, which taskspace does "
                          "not do (gradients underflow); load the backbone with dtype=bfloat16 or float32")


# ----------------------------------------------------------------------------------------------------------------


def train(
    trainable: nn.Module,
    loss_fn: Callable[[list[Example], list[str]], torch.Tensor],
    examples: Sequence[Example],
    config: TrainConfig,
    *,
    evaluate: Callable[[], float] | None = None,
    run_dir: str | Path | None = None,
    backbone: nn.Module | None = None,
    log: Callable[[dict], None] | None = None,
    initial_score: float | None = None,
    groups: list[tuple[list[nn.Parameter], float]] | None = None,
) -> TrainResult:
    """Optimise ``trainable``'s parameters; ``loss_fn(batch_examples, targets)`` returns a scalar loss.

    ``evaluate()`` returns the dev score (higher is better); it is called before the first step (unless
    ``initial_score`` already gives the untrained state's score), every ``eval_every`` steps and after the last
    step. The trained state with the best score is returned (ties go to the earlier step), unless the untrained
    state (step 0) scored strictly better than all of them: then that one is, so that training never reports a
    result worse on dev than where it started (``select_initial``; off, step 0 is evaluated and logged but never
    returned). Without ``evaluate`` the last state is returned.
    With ``micro_batch_size``, ``loss_fn`` is called on parts of the step's batch: a mean of per-example losses
    (plus terms that do not depend on the batch) gives the same step; a sum over the batch divides by
    :func:`micro_batch_share`. ``backbone`` (if given) is switched to train mode for steps and
    to eval mode for evaluation; float16 weights are refused (no loss scaling). ``groups``
    gives learning-rate multipliers per parameter group, ``[(parameters, multiplier), ...]`` (default: one group
    of every trainable parameter at 1).
    """
    rank, world = group()
    steps = _steps(trainable, examples, config, evaluate=evaluate, run_dir=run_dir, backbone=backbone, log=log,
                   initial_score=initial_score, groups=groups, rank=rank, world=world)
    try:
        request = next(steps)
        while True:
            batch, targets = request
            request = steps.send(backward(loss_fn, batch, targets, config.micro_batch_size, rank, world))
    except StopIteration as stop:
        return stop.value
    except KeyboardInterrupt:
        raise interrupted([(run_dir, config.eval_every)]) from None
    finally:
        steps.close()  # an interruption: the generator's clean-up (progress bar, evaluation mode) runs now


@dataclass
class TrainJob:
    """One of the trainables :func:`train_many` trains together: the arguments :func:`train` takes for it."""

    trainable: nn.Module
    examples: Sequence[Example]
    config: TrainConfig
    evaluate: Callable[[], float] | None = None
    run_dir: str | Path | None = None
    log: Callable[[dict], None] | None = None
    initial_score: float | None = None


def train_many(jobs: Sequence[TrainJob], joint_loss, *, backbone: nn.Module | None = None) -> list[TrainResult]:
    """Train several trainables in lockstep, each exactly as :func:`train` trains it alone (its own data order,
    optimiser, schedule, clipping, evaluations, best-state selection, early stopping and checkpoint), with one
    forward and one backward pass per step for all of them.

    ``joint_loss(items)`` gets ``[(job index, batch, targets), ...]`` for the jobs still training and returns each
    job's loss (the mean over its batch, as ``loss_fn`` returns it to :func:`train`); their sum is
    back-propagated, which gives every trainable its own loss's gradient. A job that stops early (or has finished
    its steps) leaves the pass; the others go on. One process only, without micro-batches.
    """
    if group()[1] > 1:
        raise ConfigError("several trainables in one pass run in one process (data parallelism splits the "
                          "batches of one trainable)")
    if any(job.config.micro_batch_size for job in jobs):
        raise ConfigError("--micro-batch-size: not with several trainables in one pass (each step holds all of "
                          "their batches)")
    runs = [_steps(job.trainable, job.examples, job.config, evaluate=job.evaluate, run_dir=job.run_dir,
                   backbone=backbone, log=job.log, initial_score=job.initial_score, groups=None, rank=0, world=1)
            for job in jobs]
    results: list[TrainResult | None] = [None] * len(jobs)
    pending: dict[int, tuple[list[Example], list[str]]] = {}

    def advance(k: int, value: float | None) -> None:
        try:
            pending[k] = next(runs[k]) if value is None else runs[k].send(value)
        except StopIteration as stop:
            results[k] = stop.value
            pending.pop(k, None)

    try:
        for k in range(len(jobs)):
            advance(k, None)
        while pending:
            items = [(k, *pending[k]) for k in sorted(pending)]
            losses = joint_loss(items)
            torch.stack(list(losses)).sum().backward()
            for (k, _, _), loss in zip(items, losses):
                advance(k, float(loss.detach()))
    except KeyboardInterrupt:
        raise interrupted([(job.run_dir, job.config.eval_every) for job in jobs]) from None
    finally:
        for steps in runs:
            steps.close()
    return results  # type: ignore[return-value]


def _steps(trainable: nn.Module, examples: Sequence[Example], config: TrainConfig, *, evaluate, run_dir, backbone,
           log, initial_score, groups, rank: int, world: int):
    """The training of one trainable as a generator: at each step it zeroes the gradients and yields the step's
    ``(batch, targets)``; the driver back-propagates their loss into the trainable's gradients and sends back the
    loss's value; the generator then takes the optimiser step, evaluates, checkpoints, and finally returns the
    :class:`TrainResult`. :func:`train` drives one, :func:`train_many` several in one pass."""
    config.validate()  # a config edited in place since its construction
    if config.lr is None:
        raise ConfigError("--lr: no learning rate (none means the method's default, which only `tune` and `bank` "
                          "have)")
    examples = list(examples)
    if not examples:
        raise ConfigError("no training examples")
    params = [p for p in trainable.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the trainable module has no parameters that require gradients")
    _check_dtype(backbone)
    torch.manual_seed(config.seed)
    groups = groups if groups is not None else [(params, 1.0)]
    opt = make_optimizer(config.optimizer, [{"params": list(ps), "lr": config.lr * scale} for ps, scale in groups],
                         config.lr, config.weight_decay)
    shapes = {k: list(v.shape) for k, v in trainable.state_dict().items()}
    key, data = config.resume_key(), examples_digest(examples)

    start, best_step, best_score, best_state, history, bad_evals, resumed = 0, None, None, None, [], 0, None
    # (score, state) of the untrained state, kept while it can still be the best (until a trained state reaches
    # its score).
    initial: tuple[float, dict[str, torch.Tensor]] | None = None
    ckpt = Checkpoint(Path(run_dir)) if run_dir is not None else None
    saved = ckpt.load(key, shapes, data) if ckpt is not None and ckpt.exists() and rank == 0 else None
    saved = broadcast_object(saved)  # data-parallel: every process resumes from rank 0's checkpoint
    if rank > 0:
        ckpt = None  # rank 0 writes the checkpoints
    if saved is not None:
        meta, tensors = saved
        trainable.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("param.")})
        loaded_best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        best_state = loaded_best or None
        loaded_initial = {k[8:]: v for k, v in tensors.items() if k.startswith("initial.")}
        if loaded_initial:
            initial = (meta["initial_score"], loaded_initial)
        optimizer_from_files(opt, tensors, meta["optimizer"])
        restore_rng(tensors)
        start, best_step, best_score = meta["step"], meta["best_step"], meta["best_score"]
        history, bad_evals, resumed = meta["history"], meta["bad_evals"], meta["step"]
        if rank == 0:
            logger.warning("resuming %s from its checkpoint at step %d of %d", run_dir, start, config.steps)
        if hasattr(log, "resume"):
            log.resume(history)
    scheduler = make_scheduler(opt, config.schedule, config.steps, config.warmup(), last_epoch=start - 1)
    if evaluate is not None and resumed is None:
        if initial_score is None:
            if backbone is not None:
                backbone.eval()
            trainable.eval()
            initial_score = broadcast_object(float(evaluate()))
        history.append({"step": 0, "dev": float(initial_score)})
        if config.select_initial:
            initial = (float(initial_score), _state(trainable))
        if hasattr(log, "resume"):
            log.resume([])  # a fresh start: drop what a run that died before its first checkpoint logged
        if log is not None:
            log(history[-1])

    stopped_early = False
    step = start
    window: list[float] = []
    t0 = time.time()
    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, initial=start, disable=not config.progress, desc="train", leave=False)
    try:
        while step < config.steps and not (config.patience and bad_evals >= config.patience):
            if backbone is not None:
                backbone.train()
            trainable.train()
            idx = batch_indices(len(examples), config.batch_size, config.seed, step)
            batch = [examples[i] for i in idx]
            targets = choose_targets(batch, config.seed, step)
            opt.zero_grad(set_to_none=True)
            value = yield batch, targets  # the driver back-propagates the step's loss and sends its value
            if world > 1:  # data-parallel: the step's gradient and loss are the sums of the processes' shares
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                total = torch.tensor([value], dtype=torch.float64)
                all_reduce_sum_([total, *(p.grad for p in params)])
                value = float(total)
            if not math.isfinite(value):
                raise TrainingError(
                    f"the loss became {value} at step {step + 1} (lr {scheduler.get_last_lr()[0]:.3g}); "
                    "try a lower --lr"
                )
            gnorm = grad_norm(params)
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            opt.step()
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            step += 1
            window.append(value)
            bar.update(1)
            if step % config.eval_every == 0 or step == config.steps:
                record = {"step": step, "loss": sum(window) / len(window), "lr": lr, "grad_norm": gnorm,
                          "seconds": round(time.time() - t0, 2)}
                window = []
                if evaluate is not None:
                    if backbone is not None:
                        backbone.eval()
                    trainable.eval()
                    score = broadcast_object(float(evaluate()))
                    record["dev"] = score
                    if best_score is None or score > best_score:
                        best_step, best_score, best_state, bad_evals = step, score, _state(trainable), 0
                    else:
                        bad_evals += 1
                    if initial is not None and best_score >= initial[0]:
                        initial = None  # a trained state is at least as good: step 0 can no longer win
                    bar.set_postfix(loss=f"{record['loss']:.3f}", dev=f"{score:.3f}", best=f"{best_score:.3f}")
                history.append(record)
                if log is not None and rank == 0:
                    log(record)
                if ckpt is not None:
                    ckpt.save(trainable, opt, step, (best_step, best_score, best_state), initial, history, bad_evals,
                              key, shapes, data)
        stopped_early = step < config.steps
    finally:
        bar.close()
        if backbone is not None:
            backbone.eval()
        trainable.eval()
    last = _state(trainable)
    if initial is not None:
        best_step, best_score, best_state = 0, initial[0], initial[1]
    return TrainResult(
        best_step=best_step if best_state is not None else step,
        best_score=best_score,
        best_state=best_state if best_state is not None else last,
        last_state=last,
        steps=step,
        stopped_early=stopped_early,
        resumed_from=resumed,
        history=history,
    )


class log_to:
    """A ``log`` callback appending JSON lines to ``path``. When a run resumes, the file is rewritten with the
    checkpoint's history, dropping lines of steps that the resumed run repeats."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __call__(self, record: dict) -> None:
        append_jsonl(self.path, record)

    def resume(self, history: list[dict]) -> None:
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in history))
