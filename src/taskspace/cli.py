"""The ``taskspace`` command line. Every command has ``--help``; heavy libraries load only when a command runs."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import ConfigError, TaskspaceError

#: The delta methods (the registry in taskspace.deltas; repeated here so that --help needs no torch import).
METHOD_NAMES = ("prompt", "prefix", "lora", "adapter", "bitfit", "finetune")
#: taskspace.backbones.DEFAULT_BACKBONE, repeated for the same reason (a test checks that they agree).
DEFAULT_BACKBONE = "smollm2"

# ----------------------------------------------------------------------------------------------------------------
# Option parsing helpers


def parse_options(pairs: Sequence[str] | None, fields: dict[str, Any] | None, what: str) -> dict[str, Any]:
    """``key=value`` strings to a dict, converting each value to the type of the field's default.

    ``fields`` maps option names to default values (None: accept any name and guess the type).
    """
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"{what} {pair!r}: expected key=value")
        key, raw = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        if fields is not None and key not in fields:
            raise ConfigError(f"{what} {key!r}: unknown option; valid: {', '.join(sorted(fields)) or '(none)'}")
        default = None if fields is None else fields[key]
        out[key] = _convert(raw.strip(), default, f"{what} {key}")
    return out


def _convert(raw: str, default: Any, where: str) -> Any:
    try:
        if isinstance(default, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            value = float(raw)
            if not math.isfinite(value):
                raise ConfigError(f"{where}={raw!r}: expected a finite number")
            return value
        if isinstance(default, tuple):
            return tuple(x.strip() for x in raw.split(",") if x.strip())
        if default is None:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                try:
                    value = float(raw)  # nan, inf: numbers that JSON does not spell this way
                except ValueError:
                    return raw
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{where}={raw!r}: expected a finite number")
            return value
        return raw
    except ConfigError:
        raise
    except ValueError:
        raise ConfigError(f"{where}={raw!r}: expected a value like {default!r}") from None


def _method_fields(method: str) -> dict[str, Any]:
    from .deltas import method_class

    return {name: default for name, default, _ in method_class(method).config_class.help()}


def _none_or(cast):
    def parse(raw: str):
        return None if raw.lower() in ("none", "off") else cast(raw)

    return parse


# ----------------------------------------------------------------------------------------------------------------
# Commands


def train_config_from(args: argparse.Namespace, default_lr: float):
    from .train import TrainConfig

    # Commands with per-method learning rates (bank: --lr METHOD=VALUE) have no single --lr float.
    lr = args.lr if isinstance(getattr(args, "lr", None), float) else default_lr
    return TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=lr,
        optimizer=args.optimizer, weight_decay=args.weight_decay, schedule=args.schedule,
        warmup_steps=args.warmup_steps, max_grad_norm=args.max_grad_norm, eval_every=args.eval_every,
        patience=args.patience, seed=args.seed, progress=not args.no_progress,
    )


def backbone_options_from(args: argparse.Namespace) -> dict[str, Any]:
    options = parse_options(args.backbone_opt, None, "--backbone-opt")
    if args.family:
        options["family"] = args.family
    if getattr(args, "decode", None):
        options["decode"] = args.decode
    return options


def load_backbone_from(args: argparse.Namespace, recorded_in: Path | None = None):
    """The backbone named by ``--backbone``; without one, the backbone an artefact's JSON file (a bank's or a
    subspace's) recorded, else the default."""
    from .backbones import load_backbone
    from .store import read_json

    name = args.backbone
    if name is None:
        name = read_json(recorded_in)["backbone"]["name"] if recorded_in is not None else DEFAULT_BACKBONE
    return load_backbone(name, **backbone_options_from(args))


def output_folder(path: str | Path, option: str) -> Path:
    """An output folder named by ``option``: refused when a file stands there (it is created later, when needed)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: expected a folder, found a file")
    return path


def data_dir_from(args: argparse.Namespace) -> str:
    """The data folder as an absolute path (recorded in artefacts, which must work from any directory)."""
    from .tasks import default_data_dir

    return str(Path(args.data_dir or default_data_dir()).expanduser().resolve())


def cmd_tune(args: argparse.Namespace) -> int:
    from .tuning import DEFAULT_LR, TuneConfig, default_run_name, tune

    method_options = parse_options(args.opt, _method_fields(args.method), f"--opt (for {args.method})")
    config = TuneConfig(
        task=args.task, method=args.method, data_dir=data_dir_from(args), metric=args.metric,
        method_options=method_options,
        backbone=args.backbone, backbone_options=backbone_options_from(args), k=args.k, data_seed=args.data_seed,
        resample=args.resample, seed=args.seed, train=train_config_from(args, DEFAULT_LR[args.method]),
        eval_batch_size=args.eval_batch_size, max_test_examples=args.max_test_examples, init_from=args.init_from,
        keep_checkpoint=args.keep_checkpoint,
    )
    run_dir = output_folder(args.out, "--out") / (args.run_name or default_run_name(config))
    result = tune(config, run_dir, overwrite=args.overwrite)
    _print_scores(result.scores, result.task.name, args.method, run_dir)
    return 0


def _pct(x) -> str:
    return "   n/a" if x is None else f"{100 * x:6.2f}"


def _print_scores(scores: dict, task: str, method: str, run_dir: Path) -> None:
    zs = scores.get("zero_shot") or {}
    decode = f" | decode {scores['decode']}" if scores.get("decode") else ""
    print(f"task {task} | method {method} | metric {scores['metric']}{decode} | run {run_dir}")
    print(f"{'':>22} {'dev':>7} {'test':>7}")
    for label, d in (("frozen backbone", zs.get("frozen", {})), ("initial theta", zs.get("init", {}))):
        print(f"{label:>22} {_pct(d.get('dev'))} {_pct(d.get('test'))}")
    print(f"{'tuned (best on dev)':>22} {_pct(scores['dev'])} {_pct(scores['test'])}   step {scores['best_step']}")
    if scores.get("test") is not None:
        print(f"test examples: {scores['n_test']} of {scores['n_test_total']}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .store import read_json
    from .tuning import reevaluate

    if not Path(args.run).is_dir():
        raise ConfigError(f"RUN {args.run}: expected a run directory (one that `taskspace tune` wrote)")
    again = reevaluate(args.run, data_dir=args.data_dir)
    scores = read_json(Path(args.run) / "scores.json")
    print(f"{'split':>6} {'saved':>8} {'now':>8}")
    same = True
    for split, value in again.items():
        print(f"{split:>6} {_pct(scores[split])} {_pct(value)}")
        same &= value == scores[split]
    print("identical to the saved scores" if same else "DIFFERENT from the saved scores")
    return 0 if same else 1


def cmd_tasks(args: argparse.Namespace) -> int:
    from .tasks import CATALOG, available_tasks

    names = sorted(CATALOG)
    if args.data_dir:
        names = available_tasks(args.data_dir)
    wanted_type = None
    if args.type:
        types = sorted({info.type for info in CATALOG.values()})
        wanted_type = next((t for t in types if t.lower() == args.type.lower()), None)
        if wanted_type is None:
            raise ConfigError(f"--type {args.type!r}: expected one of {', '.join(types)}")
    rows = []
    for n in names:
        info = CATALOG.get(n)
        if info is None:
            # A task of the user's own (its folder holds few-shot files): listed unless a catalog filter asks for
            # what only the catalog knows.
            if not (args.category or wanted_type):
                rows.append((n, "(--metric)", "unknown", "not in the catalog", "?"))
            continue
        if (args.category and info.category != args.category) or (wanted_type and info.type != wanted_type):
            continue
        rows.append((n, info.metric, info.category, info.type, "yes" if info.has_options else "no"))
    width = max((len(r[0]) for r in rows), default=4)
    print(f"{'task':<{width}}  {'metric':<19} {'category':<8} {'options':<7} type")
    for n, metric, cat, typ, opts in rows:
        print(f"{n:<{width}}  {metric:<19} {cat:<8} {opts:<7} {typ}")
    print(f"{len(rows)} tasks")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from .deltas import METHODS
    from .tuning import DEFAULT_LR

    for name, cls in METHODS.items():
        print(f"{name}: {cls.__doc__.strip().splitlines()[0]}")
        print(f"    default --lr {DEFAULT_LR[name]}; per-example theta: {'yes' if cls.supports_per_example else 'no'}")
        for opt, default, help_text in cls.config_class.help():
            shown = ",".join(default) if isinstance(default, tuple) else str(default).lower() if isinstance(default, bool) else str(default)
            print(f"    --opt {(opt + '=' + shown):<44} {help_text}")
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from .backbones import meta_backbone
    from .deltas import build_method

    backbone = meta_backbone(args.backbone, family=args.family)
    method = build_method(args.method, backbone, parse_options(args.opt, _method_fields(args.method), "--opt"))
    print(f"{args.method} on {args.backbone} ({backbone.model_type}, {backbone.num_parameters():,} frozen "
          f"parameters): D = {method.size:,}")
    if args.layout:
        for s in method.layout.slices:
            print(f"  {s.name:60s} {str(list(s.shape)):>16} offset {s.offset}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .tasks import available_tasks, write_tsv
    from .tasks.catalog import CATALOG
    from .tasks.formats import read_examples, task_files

    src, dst = Path(args.src), output_folder(args.dst, "DST")
    tasks = args.tasks or available_tasks(src)
    converted = []  # everything is read (and checked) before anything is written
    for task in tasks:
        labels = CATALOG[task].labels if task in CATALOG else None
        for seed in args.seeds:
            for split, path in task_files(src, task, args.k, seed).items():
                examples = read_examples(path, task=task, labels=labels)
                converted.append((examples, dst / task / f"{task}_{args.k}_{seed}_{split}.tsv", labels))
    for examples, out, labels in converted:
        write_tsv(examples, out, sanitize=True, labels=labels)
    print(f"wrote {len(converted)} files under {dst}")
    return 0


# ----------------------------------------------------------------------------------------------------------------


def add_backbone_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", default=DEFAULT_BACKBONE,
                   help=f"smollm2 (SmolLM2-135M-Instruct), minilm (all-MiniLM-L6-v2), a model folder or a hub name "
                        f"(default: {DEFAULT_BACKBONE})")
    p.add_argument("--family", choices=["seq2seq", "causal", "encoder"], help="override the backbone family")
    p.add_argument("--decode", choices=["generate", "rank"],
                   help="generate: answer every task by generated text scored as a string (the papers' protocol; "
                        "the default of seq2seq and causal backbones); rank: choose the most likely option of "
                        "tasks with options (the only mode of encoder backbones)")
    p.add_argument("--backbone-opt", action="append", metavar="KEY=VALUE",
                   help="backbone option, e.g. dtype=float32 (default auto: bfloat16 where the hardware runs it "
                        "fast), max_input_length=256, similarity_scale=20, label_smoothing=0.1")


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder of task folders (default: $TASKSPACE_DATA)")
    p.add_argument("--k", type=int, default=16, help="shots in the file names (default 16)")
    p.add_argument("--data-seed", type=int, default=100, help="which few-shot files (100, 13, 21, 42, 87)")


def add_train_args(p: argparse.ArgumentParser, *, steps: int, eval_every: int, lr: float | None = None,
                   optimizer: str = "adamw", schedule: str = "linear", lr_help: str = "learning rate",
                   with_lr: bool = True) -> None:
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the data order (default: 0)")
    p.add_argument("--steps", type=int, default=steps, help="optimiser steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="training examples per step (default: %(default)s)")
    if with_lr:
        p.add_argument("--lr", type=float, default=lr,
                       help=lr_help if lr is None else f"{lr_help} (default: %(default)s)")
    p.add_argument("--optimizer", default=optimizer, choices=["adamw", "adafactor"])
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--schedule", default=schedule, choices=["linear", "constant"],
                   help="after warm-up: linear decay to 0, or constant")
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--max-grad-norm", type=_none_or(float), default=1.0, help="gradient clipping (none: off)")
    p.add_argument("--eval-every", type=int, default=eval_every,
                   help="evaluate on dev every N steps (default: %(default)s)")
    p.add_argument("--patience", type=_none_or(int), default=None,
                   help="stop after N evaluations without a better dev score")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eval-batch-size", type=int, default=32)
    p.add_argument("--max-test-examples", type=_none_or(int), default=500,
                   help="evaluate on a seeded random subset of at most N test examples (none: all)")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (``taskspace COMMAND: error: ...``, exit status 2) like taskspace's own;
    ``--help`` still shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="taskspace",
        description="Delta-tuning methods as flat vectors and the low-dimensional task subspaces they share.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("tune", help="tune one delta method on one task and write a run directory",
                       description="Tune a delta method on a few-shot task; prints dev/test scores. Re-running "
                                   "the same command resumes an interrupted run.")
    t.add_argument("--task", required=True, help="task name (see `taskspace tasks`)")
    t.add_argument("--method", required=True, choices=METHOD_NAMES)
    add_backbone_args(t)
    add_data_args(t)
    t.add_argument("--metric", help="the task's metric, for a task that is not in the catalog (EM, ACC, QA-F1, "
                                    "Classification-F1, Rouge-L, Matthew-Correlation, Pearson-Correlation); "
                                    "for a catalogued task it replaces the catalog's")
    t.add_argument("--resample", action="store_true",
                   help="resample train/dev CrossFit-style from the pooled examples with --data-seed")
    t.add_argument("--opt", action="append", metavar="KEY=VALUE", help="method option (see `taskspace methods`)")
    t.add_argument("--init-from", metavar="RUN/theta",
                   help="start from a saved delta (e.g. an IST solution's theta) instead of the initialisation")
    add_train_args(t, steps=300, eval_every=50, lr_help="learning rate (default: per method, see `taskspace methods`)")
    add_eval_args(t)
    t.add_argument("--out", default="runs", help="parent folder of run directories (default: runs)")
    t.add_argument("--run-name", help="run directory name (default: <task>-<method>-<backbone>-d<data seed>-s<seed>-"
                                      "<hash of the settings>, so that other settings never reuse a run)")
    t.add_argument("--overwrite", action="store_true", help="delete an existing run directory of that name first")
    t.add_argument("--keep-checkpoint", action="store_true",
                   help="keep the last training state (with the optimiser's) after the run finished")
    t.set_defaults(func=cmd_tune)

    e = sub.add_parser("evaluate", help="re-evaluate a finished run's saved theta",
                       description="Load a run's theta (checking backbone and method) and evaluate it on the same "
                                   "dev and test examples; exits 1 if the scores differ from the saved ones.")
    e.add_argument("run", help="run directory")
    e.add_argument("--data-dir", help="data folder, if it moved since the run")
    e.set_defaults(func=cmd_evaluate)

    k = sub.add_parser("tasks", help="list the task catalog", description="List tasks with metric and category.")
    k.add_argument("--category", choices=["cls", "non-cls"])
    k.add_argument("--type", help="finer type, e.g. sentiment, NLI, multiple-choice QA")
    k.add_argument("--data-dir", help="only tasks present in this folder")
    k.set_defaults(func=cmd_tasks)

    m = sub.add_parser("methods", help="list delta methods and their options",
                       description="List delta methods, their options (--opt KEY=VALUE) and default learning rates.")
    m.set_defaults(func=cmd_methods)

    c = sub.add_parser("params", help="count a method's parameters from a backbone's config (no weights)",
                       description="Build the backbone from its config.json on the meta device and print the size "
                                   "D of a method's theta (and its layout with --layout).")
    c.add_argument("--backbone", default=DEFAULT_BACKBONE,
                   help=f"built-in name, model folder (config.json is enough) or hub name (default: {DEFAULT_BACKBONE})")
    c.add_argument("--family", choices=["seq2seq", "causal", "encoder"])
    c.add_argument("--method", required=True, choices=METHOD_NAMES)
    c.add_argument("--opt", action="append", metavar="KEY=VALUE")
    c.add_argument("--layout", action="store_true", help="print every named slice of theta")
    c.set_defaults(func=cmd_params)

    v = sub.add_parser("convert", help="write MetaICL JSONL task files in CrossFit's TSV layout",
                       description="Convert few-shot files to <task>_<k>_<seed>_<split>.tsv (CrossFit layout); "
                                   "multiple-choice options are appended to the input as ' (A) ... (B) ...'.")
    v.add_argument("src", help="folder of task folders")
    v.add_argument("dst", help="output folder")
    v.add_argument("--tasks", nargs="*", help="task names (default: all in src)")
    v.add_argument("--k", type=int, default=16)
    v.add_argument("--seeds", type=int, nargs="*", default=[100, 13, 21, 42, 87])
    v.set_defaults(func=cmd_convert)

    from .cli_subspace import add_commands

    add_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TaskspaceError as e:
        print(f"taskspace {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
