"""Tune one delta method on one task: the ``taskspace tune`` recipe.

The run directory is described in :mod:`taskspace.runs`. Running the same command again resumes an unfinished
run, and returns a finished one after checking that its files are complete and were made with the same
configuration on the same data (the content of each split, wherever the data folder lies).
"""

from __future__ import annotations

import hashlib
import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from .backbones import DEFAULT_BACKBONE, Backbone, display_name, load_backbone
from .config import Config, option, positive_count
from .deltas import METHODS, DeltaMethod, FlatParameters, build_method, default_lr
from .errors import ConfigError, DataError
from .evaluation import capped_test_split, evaluate_splits
from .runs import (DATA_DIGEST, DirectTheta, PreparedRun, check_run_dir, fit_source, fit_thetas_together,
                   is_finished, split_digests)
from .store import exclusive, load_delta, read_json
from .tasks import Task, load_task_as
from .tasks.sources import Columns
from .train import TrainConfig


# A subclass's fields come after its bases' (configs are compared, hashed and read by key, so the order changes no
# run's name); the bases are keyword-only so that a subclass can add required fields (its task) after their defaults.


@dataclass(kw_only=True)
class FewShotRunConfig(Config):
    """What every run on a task's few-shot files shares: the data folder, which few-shot files, and how the run is
    scored (the seeded test subset, the evaluation batch size)."""

    data_dir: str = option(help="folder of task folders", cli=False)
    k: int = option(16, "shots in the file names", check=positive_count)
    data_seed: int = option(100, "which few-shot files (100, 13, 21, 42, 87)")
    eval_batch_size: int = option(32, "examples per evaluation batch", check=positive_count)
    max_test_examples: int | None = option(500, "evaluate on a seeded random subset of at most N test examples "
                                                "(none: all)", check=positive_count, nullable=True)
    test_sample_seed: int = option(0, "seed of the test subset", cli=False)


#: The help of ``pool_test`` (tune, multitask, subspace-tune, bank): ``load_task``'s held-out pool.
POOL_TEST_HELP = ("a task without a test file is tested on its held-out pool: the train+dev examples of every seed's "
                  "few-shot files that are not in this run's train or dev")

#: The training budget of ``tune`` and ``bank`` unless told otherwise, every method alike (the learning rate is each
#: method's): chosen on SmolLM2 by recipes/budget.py, docs/budget.md. Early stopping ends a run whose dev score has
#: not improved for ``patience`` evaluations, so that ``steps`` can be what the slowest learner needs.
TUNE_BUDGET = {"steps": 200, "batch_size": 8, "eval_every": 25, "patience": 3}


def tune_training(**changes: Any) -> TrainConfig:
    """The training settings of a tune run or bank entry: :data:`TUNE_BUDGET`, the method's learning rate (``lr``
    None until the config knows its method), and ``changes``."""
    return TrainConfig(**{"lr": None, **TUNE_BUDGET, **changes})


@dataclass(kw_only=True)
class BaseTuneConfig(FewShotRunConfig):
    """What a run that tunes a delta method's theta shares (:class:`TuneConfig`, :class:`MultiTuneConfig`): the
    method and its options, the backbone, the seed and the training settings. ``train.lr`` left at None takes the
    method's default learning rate (``taskspace methods``)."""

    method: str = option(help="delta method", choices=METHODS, cli=False)
    method_options: dict[str, Any] = option(help="method options (see `taskspace methods`)", factory=dict)
    backbone: str = option(DEFAULT_BACKBONE, "backbone name, folder or hub name (of a backbone given to the run: "
                                             "its name)", cli=False)
    backbone_options: dict[str, Any] = option(help="backbone options", factory=dict)
    seed: int = option(0, "seed of the initialisation (and, on the command line, of the data order)")
    train: TrainConfig = option(help="training settings", factory=tune_training)

    def check(self) -> None:
        if self.train.lr is None:
            self.train = self.train.replace(lr=default_lr(self.method))


@dataclass
class TuneConfig(BaseTuneConfig):
    """One tune run: a delta method on a task's few-shot files. ``train.lr`` left at None takes the method's
    default learning rate (``taskspace methods``)."""

    task: str = option(help="task name (see `taskspace tasks`)", cli=False)
    metric: str | None = option(None, "the task's metric: one of the seven, or module:function; replaces the "
                                      "catalog's (a task outside the catalog is scored with ACC when it has "
                                      "options, else EM)")
    columns: Columns = option(help="the columns of your own data", factory=Columns, since="0.2")
    resample: bool = option(False, "resample train/dev CrossFit-style from the pooled examples with the data seed")
    resample_k: int | None = option(None, "with --resample: examples per label (per task without fixed labels) "
                                          "to draw, e.g. 32 or 64 (none: --k)", check=positive_count, since="0.2")
    pool_test: bool = option(False, POOL_TEST_HELP, since="0.2")
    zero_shot: bool = option(True, "evaluate the frozen backbone and the initial theta before training "
                                   "(zero_shot.json)", cli=False)
    init_from: str | None = option(None, "start from a saved delta (<run>/theta, e.g. an IST solution) instead of "
                                         "the method's initialisation")
    keep_checkpoint: bool = option(False, "keep the last training state (with the optimiser's) after the run "
                                          "finished", runtime=True)


@dataclass
class RunResult:
    run_dir: Path
    scores: dict[str, Any]
    theta: torch.Tensor
    method: DeltaMethod
    task: Task


def default_run_name(config: TuneConfig, task: Task | None = None) -> str:
    """``<task>-<method>-<backbone>-d<data seed>-s<seed>-<hash>``: the hash (8 hex digits) covers every setting that
    defines the run's results and the content of each split it is trained and scored on (``task``, loaded from
    ``config`` unless given), but not the data folder's path: runs of different settings (a sweep of --lr or
    --steps) or of edited data never share a directory, and the same command on the same data always finds its
    own run again, wherever the data folder lies."""
    backbone = Path(config.backbone).name if Path(config.backbone).exists() else config.backbone.replace("/", "_")
    data = f"r{config.data_seed}" if config.resample else f"d{config.data_seed}"
    task = task if task is not None else load_task_as(config)
    identity = config.identity()
    identity.pop("data_dir")
    identity[DATA_DIGEST] = split_digests(task, capped_test_split(task, config.max_test_examples,
                                                                  config.test_sample_seed))
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    return f"{config.task}-{config.method}-{backbone}-{data}-s{config.seed}-{digest}"


def run_backbone(config: BaseTuneConfig, backbone: Backbone | None) -> Backbone:
    """The backbone a run tunes on: the config's, loaded, or ``backbone`` when one is given (one already loaded,
    or a model of your own, :func:`taskspace.backbones.wrap_model`), which must be the one the config names: a
    run is named and recorded under the config's backbone."""
    if backbone is None:
        return load_backbone(config.backbone, **config.backbone_options)
    if display_name(config.backbone) != backbone.name:
        raise ConfigError(f"the config's backbone is {config.backbone!r}, the backbone given is {backbone.name!r}: "
                          f"set the config's backbone to {backbone.name!r} (runs are recorded under it)")
    return backbone


def _setup(config: TuneConfig, run_dir: Path, backbone: Backbone | None, overwrite: bool, method=None,
           task: Task | None = None):
    """Everything that can be checked before a run directory is touched, so that bad input leaves nothing behind:
    the task (loaded unless given) and the test examples the run is scored on, the backbone (loaded if not given),
    the method (``method``: one already built, shared by runs of the same settings) and the initial theta."""
    config.validate()  # the config may have been edited since its construction
    task = task if task is not None else load_task_as(config)
    test = capped_test_split(task, config.max_test_examples, config.test_sample_seed)
    backbone = run_backbone(config, backbone)
    backbone.check_task(task.info.has_options, task.name)
    method = method if method is not None else build_method(config.method, backbone, config.method_options)
    check_run_dir(run_dir, {"run": config.identity()}, overwrite=overwrite, backbone=backbone,
                  data={task.name: split_digests(task, test)})
    if config.init_from is not None:
        theta_init = load_delta(config.init_from, method)[0]
    else:
        theta_init = method.init(torch.Generator(device="cpu").manual_seed(config.seed))
    return task, test, backbone, method, theta_init


def _finished(run_dir: Path, method: DeltaMethod, task: Task) -> RunResult:
    theta = load_delta(run_dir / "theta", method)[0]  # read and checked, never assumed
    return RunResult(run_dir, read_json(run_dir / "scores.json"), theta, method, task)


def tune(
    config: TuneConfig,
    run_dir: str | Path,
    *,
    backbone: Backbone | None = None,
    overwrite: bool = False,
    task: Task | None = None,
) -> RunResult:
    """Tune ``config.method`` on ``config.task`` into ``run_dir`` (see :mod:`taskspace.runs`) on the config's
    backbone, or on ``backbone`` when given (one already loaded, or a model of your own wrapped by
    :func:`taskspace.wrap_model`; the config must name it). ``task``: the task ``config`` names, when the caller
    has loaded it already (else it is loaded here). Called again, it resumes an unfinished run or returns the
    finished one."""
    run_dir = Path(run_dir)
    task, test, backbone, method, theta_init = _setup(config, run_dir, backbone, overwrite, task=task)
    with exclusive(run_dir):  # creates it; a second process on the same run is refused
        if is_finished(run_dir):
            return _finished(run_dir, method, task)
        source = DirectTheta(FlatParameters(theta_init, method.layout))
        scores = fit_source(task, test, method, source, config.train, run_dir, backbone=backbone,
                            eval_batch_size=config.eval_batch_size, record={"run": config.identity()},
                            theta_init=theta_init, evaluate_zero_shot=config.zero_shot,
                            keep_checkpoint=config.keep_checkpoint)
    return RunResult(run_dir, scores, source.current(), method, task)  # the trainable holds the best state


def tune_together(configs: Sequence[TuneConfig], run_dirs: Sequence[str | Path], *, backbone: Backbone
                  ) -> list[RunResult]:
    """Tune several runs of one method with the same settings (tasks and seeds may differ) in one pass: every
    step runs all their batches through one forward and backward pass, each example with its own run's theta
    (:func:`taskspace.runs.fit_thetas_together`). Each run ends as :func:`tune` would leave it (up to float
    rounding), finished runs are verified and returned."""
    def shared(c: TuneConfig) -> dict:
        same = c.identity()
        for key in ("task", "seed", "data_dir", "metric", "columns"):
            same.pop(key, None)
        same["train"].pop("seed", None)
        return same

    if len({json.dumps(shared(c), sort_keys=True) for c in configs}) > 1:
        raise ConfigError("runs tuned together must share the method, its options and the training settings")
    results: list[RunResult | None] = [None] * len(configs)
    fits, method = [], None
    with ExitStack() as stack:
        for k, (config, run_dir) in enumerate(zip(configs, map(Path, run_dirs))):
            task, test, backbone, method, theta_init = _setup(config, run_dir, backbone, False, method)
            stack.enter_context(exclusive(run_dir))
            if is_finished(run_dir):
                results[k] = _finished(run_dir, method, task)
                continue
            source = DirectTheta(FlatParameters(theta_init, method.layout))
            fits.append((k, PreparedRun(task, test, method, source, config.train, run_dir, backbone=backbone,
                                 eval_batch_size=config.eval_batch_size, record={"run": config.identity()},
                                 theta_init=theta_init, evaluate_zero_shot=config.zero_shot,
                                 keep_checkpoint=config.keep_checkpoint)))
        if fits:
            scores = fit_thetas_together([fit for _, fit in fits], backbone)
            for (k, fit), score in zip(fits, scores):
                results[k] = RunResult(fit.run_dir, score, fit.source.current(), fit.method, fit.task)
    return results  # type: ignore[return-value]


def load_run(run_dir: str | Path, *, backbone: Backbone | None = None, data_dir: str | None = None,
             dtype: str | None = None) -> tuple[TuneConfig, Task, DeltaMethod, torch.Tensor, dict[str, Any]]:
    """Rebuild a finished run: its config, task, method (on ``backbone``, loaded if not given: with the run's
    backbone options, its dtype replaced by ``dtype`` if given), theta, scores."""
    run_dir = Path(run_dir)
    saved = read_json(run_dir / "config.json")
    if not is_finished(run_dir):
        raise DataError("the run is not finished (no scores.json); run the same command again to resume it", run_dir)
    run = dict(saved.get("run") or {})
    unknown = sorted(set(run) - {name for name, _, _ in TuneConfig.help()} - {"task", "method", "data_dir"})
    if not run or unknown:
        raise DataError("not a `taskspace tune` run (" + (f"its settings include {unknown[0]!r}" if unknown else
                        "no run settings") + "); `taskspace evaluate` re-scores tune runs", run_dir / "config.json")
    config = TuneConfig.from_dict(run, **({"data_dir": data_dir} if data_dir is not None else {}))
    if backbone is None:
        # the input template the run was made with (recorded in its backbone; before templates: plain), unless the
        # run's options name one; the dtype as the run's options resolve here unless ``dtype`` replaces it
        template = (saved.get("backbone") or {}).get("template", "plain")
        backbone = load_backbone(config.backbone, **{"template": template, **config.backbone_options,
                                                     **({"dtype": dtype} if dtype is not None else {})})
    method = build_method(config.method, backbone, config.method_options)
    theta, _, _ = load_delta(run_dir / "theta", method)
    task = load_task_as(config)
    return config, task, method, theta, read_json(run_dir / "scores.json")


def reevaluate(run_dir: str | Path, *, backbone: Backbone | None = None, data_dir: str | None = None,
               dtype: str | None = None) -> dict[str, Any]:
    """Evaluate a finished run's saved theta again on dev and test (the same test subset); ``dtype`` replaces the
    run's dtype setting. The scores, and under ``"dtype"`` the dtype they were computed in."""
    config, task, method, theta, _ = load_run(run_dir, backbone=backbone, data_dir=data_dir, dtype=dtype)
    test = capped_test_split(task, config.max_test_examples, config.test_sample_seed)
    scores = evaluate_splits(method.backbone, {"dev": task.dev, "test": test}, task.metric, method=method,
                             theta=theta, batch_size=config.eval_batch_size)
    return {**{split: value for split, value in scores.items() if value is not None},
            "dtype": str(method.backbone.dtype).removeprefix("torch.")}


# ----------------------------------------------------------------------------------------------------------------
# One theta for several tasks (IPT's Table IV baseline)


@dataclass
class MultiTuneConfig(BaseTuneConfig):
    """One delta method tuned on the pooled training examples of several tasks: one theta for all of them, chosen
    by the mean dev score over the tasks (IPT's multi-task prompt tuning / fine-tuning baseline, Table IV)."""

    tasks: list[str] = option(help="the tasks", cli=False)
    pool_test: bool = option(False, POOL_TEST_HELP, since="0.2")

    def check(self) -> None:
        if not self.tasks:
            raise ConfigError("--tasks: name at least one task")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"--tasks {' '.join(self.tasks)}: a task is named twice")
        super().check()


def multitask_tune(config: MultiTuneConfig, run_dir: str | Path, *, backbone: Backbone | None = None,
                   overwrite: bool = False) -> dict[str, Any]:
    """Tune one theta on the pooled tasks into ``run_dir`` (resumable like a tune run); returns the scores:
    per task dev and test with the chosen theta, and their means."""
    from .evaluation import evaluate
    from .store import save_delta, write_json
    from .subspace.multitask import MultiTask
    from .train import log_to, train

    run_dir = Path(run_dir)
    config.validate()
    data = MultiTask.load(config.tasks, config.data_dir, k=config.k, seed=config.data_seed,
                          pool_test=config.pool_test)
    backbone = run_backbone(config, backbone)
    data.check(backbone)
    method = build_method(config.method, backbone, config.method_options)
    record = {"multitask": config.identity()}
    tests = {n: capped_test_split(t, config.max_test_examples, config.test_sample_seed) for n, t in data.tasks.items()}
    digests = {n: split_digests(t, tests[n]) for n, t in data.tasks.items()}
    check_run_dir(run_dir, record, overwrite=overwrite, backbone=backbone, data=digests)
    with exclusive(run_dir):
        if is_finished(run_dir):
            load_delta(run_dir / "theta", method)  # read and checked, never assumed
            return read_json(run_dir / "scores.json")
        from . import __version__

        write_json(run_dir / "config.json", {
            "taskspace_version": __version__, **record,
            "backbone": {**backbone.describe(), "fingerprint": backbone.fingerprint()}, "method": method.describe(),
            "data": {n: {"sources": t.sources, "train": len(t.train), "dev": len(t.dev), "test": len(tests[n]),
                         "metric": t.metric} for n, t in data.tasks.items()},
            DATA_DIGEST: digests})
        theta_init = method.init(torch.Generator(device="cpu").manual_seed(config.seed))
        source = DirectTheta(FlatParameters(theta_init, method.layout))

        def loss_fn(examples, targets):
            with method.bind(source.bound()):
                return backbone.loss(backbone.collate(examples, targets)).mean()

        def dev_score() -> float:
            theta = source.current()
            return data.mean_dev_score(backbone, method, lambda i: theta, config.eval_batch_size)

        result = train(source.trainable, loss_fn, data.train_examples(), config.train, evaluate=dev_score,
                       run_dir=run_dir, backbone=backbone, log=log_to(run_dir / "log.jsonl"))
        source.trainable.load_state_dict(result.best_state)
        theta = source.current()
        per_task = {}
        for name, task in data.tasks.items():
            dev = evaluate(backbone, task.dev, task.metric, method=method, theta=theta,
                           batch_size=config.eval_batch_size, settle=True)[0]
            test = (evaluate(backbone, tests[name], task.metric, method=method, theta=theta,
                             batch_size=config.eval_batch_size, settle=True)[0] if tests[name] else None)
            per_task[name] = {"metric": task.metric, "dev": dev, "test": test, "n_test": len(tests[name])}
        tested = [v["test"] for v in per_task.values() if v["test"] is not None]
        scores = {"tasks": per_task, "dev": sum(v["dev"] for v in per_task.values()) / len(per_task),
                  "test": sum(tested) / len(tested) if tested else None, "best_step": result.best_step,
                  "steps": result.steps, "decode": backbone.decode}
        save_delta(run_dir / "theta", method, theta, theta_init,
                   extra={"tasks": list(config.tasks), "best_step": result.best_step})
        write_json(run_dir / "scores.json", scores)
        import shutil

        shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
    return scores
