"""The single-task commands of ``taskspace``: tune, evaluate, predict, plot, multitask, tasks, methods, params,
convert (export and import-peft: :mod:`.export`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..backbones import DEFAULT_BACKBONE
from ..backbones.dtypes import DTYPE_CHOICES
from ..config import add_arguments, from_args
from ..errors import ConfigError, DataError
from ..presets import tuning_values
from ..tasks.task import HELD_OUT
from ..tuning import MultiTuneConfig, TuneConfig
from .common import (add_backbone_args, add_data_args, add_eval_args, add_preset_arg, add_runs_out_args,
                     add_tasks_args, add_train_args, backbone_options_from, data_dir_from,
                     method_fields, method_names, output_file, output_folder, parse_options, stop_note)


def tune_config_from(args: argparse.Namespace) -> TuneConfig:
    """The library's TuneConfig with what the command line set."""
    method_options = parse_options(args.opt, method_fields(args.method), f"--opt (for {args.method})")
    preset_options, preset_train = tuning_values(args.preset, args.method) if args.preset else ({}, {})
    base = TuneConfig(task=args.task, method=args.method, data_dir=data_dir_from(args), backbone=args.backbone,
                      method_options={**preset_options, **method_options}, backbone_options=backbone_options_from(args))
    return from_args(base.updated({"train": preset_train}), args)


def cmd_tune(args: argparse.Namespace) -> int:
    from ..tasks import load_task_as
    from ..tuning import default_run_name, tune

    config = tune_config_from(args)
    out = output_folder(args.out, "--out")
    task = load_task_as(config)  # once: the default name covers its content
    run_dir = out / (args.run_name or default_run_name(config, task))
    result = tune(config, run_dir, overwrite=args.overwrite, task=task)
    _print_scores(result.scores, result.task.name, args.method, run_dir)
    return 0


def _pct(x) -> str:
    return "   n/a" if x is None else f"{100 * x:6.2f}"


def _recorded(run_dir: Path) -> dict:
    """The run's config.json ({} when it has none)."""
    from ..store import read_json

    config = Path(run_dir) / "config.json"
    return read_json(config) if config.is_file() else {}


def _dtype_note(recorded: dict) -> str:
    """`` | dtype X``: the dtype the run's backbone computed in, as its config.json records it."""
    from ..runs import recorded_dtype

    dtype = recorded_dtype(recorded) if recorded else None
    return f" | dtype {dtype}" if dtype else ""


def _print_scores(scores: dict, task: str, method: str, run_dir: Path) -> None:
    zs = scores.get("zero_shot") or {}
    decode = f" | decode {scores['decode']}" if scores.get("decode") else ""
    recorded = _recorded(run_dir)  # read once: its dtype and where its test examples came from
    print(f"task {task} | method {method} | metric {scores['metric']}{decode}{_dtype_note(recorded)} | run {run_dir}")
    print(f"{'':>22} {'dev':>7} {'test':>7}")
    for label, d in (("frozen backbone", zs.get("frozen", {})), ("initial theta", zs.get("init", {}))):
        print(f"{label:>22} {_pct(d.get('dev'))} {_pct(d.get('test'))}")
    print(f"{'tuned (best on dev)':>22} {_pct(scores['dev'])} {_pct(scores['test'])}   step {scores['best_step']}")
    if note := stop_note(scores):
        print(note)
    source = str(recorded.get("data", {}).get("sources", {}).get("test", ""))
    if scores.get("test") is not None:
        held_out = " of the held-out pool (no test file)" if source.startswith(HELD_OUT) else ""
        print(f"test examples: {scores['n_test']} of {scores['n_test_total']}{held_out}")
    elif source.startswith("none") and "your data" not in source:  # CrossFit's files: their pool can be held out
        print("no test file: scored on dev only (--pool-test scores the held-out pool of the other seeds' files)")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..runs import recorded_dtype
    from ..store import read_json
    from ..tuning import reevaluate

    if not Path(args.run).is_dir():
        raise ConfigError(f"RUN {args.run}: expected a run directory (one that `taskspace tune` wrote)")
    again = reevaluate(args.run, data_dir=args.data_dir, dtype=args.dtype)
    now = again.pop("dtype")
    scores = read_json(Path(args.run) / "scores.json")
    then = recorded_dtype(read_json(Path(args.run) / "config.json"))
    print(f"{'split':>6} {'saved':>8} {'now':>8}")
    same = True
    for split, value in again.items():
        print(f"{split:>6} {_pct(scores[split])} {_pct(value)}")
        same &= value == scores[split]
    print("identical to the saved scores" if same else "DIFFERENT from the saved scores")
    if then is not None and then != now:
        why = f"--dtype {args.dtype}" if args.dtype else f"the run's dtype setting resolves to {now} on this host"
        print(f"the run computed in {then} and this evaluation in {now} ({why}): scores can differ for that reason "
              f"alone; --dtype {then} evaluates as the run did")
    return 0 if same else 1


def cmd_predict(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..predict import Predictor, read_queries
    from ..store import write_text

    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: expected a positive number")
    run = Path(args.run)
    if not (run / "config.json").is_file():
        raise ConfigError(f"RUN {run}: expected a run directory (one that tune or subspace-tune wrote)")
    if not (run / "scores.json").is_file():
        raise ConfigError(f"RUN {run}: the run is not finished; run its command again to finish it")
    if args.input == "-":
        queries = read_queries(sys.stdin.readlines(), "standard input")
    else:
        path = Path(args.input)
        if not path.is_file():
            raise ConfigError(f"--input {path}: file not found")
        queries = read_queries(path.read_text(encoding="utf-8").splitlines(), str(path))
    if args.output is not None:
        output_file(args.output, "--output")
    predictor = Predictor.load(args.run)
    answers = predictor.predict(queries, batch_size=args.batch_size, progress=not args.no_progress)
    if args.output is not None and args.output.endswith(".jsonl"):
        lines = [json.dumps({"input": q.input, **({"options": list(q.options)} if q.options else {}),
                             "prediction": a}) for q, a in zip(queries, answers)]
    else:  # one line per prediction: a line break inside one becomes a space (JSON lines keep it exactly)
        lines = [" ".join(a.splitlines()) for a in answers]
    text = "".join(line + "\n" for line in lines)
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_text(args.output, text)
        print(f"{len(answers)} predictions written to {args.output}", file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from ..analysis.plots import plot_run

    for run in args.runs:
        if not Path(run).is_dir():
            raise ConfigError(f"RUN {run}: expected a run directory")
    for run in args.runs:
        print(f"{plot_run(run)}")
    return 0


def cmd_multitask(args: argparse.Namespace) -> int:
    from ..tuning import MultiTuneConfig, multitask_tune
    from .common import known_tasks, tasks_from

    method_options = parse_options(args.opt, method_fields(args.method), f"--opt (for {args.method})")
    base = MultiTuneConfig(tasks=tasks_from(args, args.parts), method=args.method, data_dir=data_dir_from(args),
                           backbone=args.backbone, backbone_options=backbone_options_from(args),
                           method_options=method_options)
    config = from_args(base, args)
    known_tasks(config.tasks, config.data_dir)
    scores = multitask_tune(config, output_folder(args.out, "--out"), overwrite=args.overwrite)
    width = max(len(t) for t in scores["tasks"])
    print(f"one {args.method} theta for {len(scores['tasks'])} tasks | best step {scores['best_step']} | run {args.out}")
    print(f"{'task':<{width}}  {'dev':>7} {'test':>7}")
    for task, s in scores["tasks"].items():
        print(f"{task:<{width}}  {_pct(s['dev'])} {_pct(s['test'])}")
    print(f"{'mean':<{width}}  {_pct(scores['dev'])} {_pct(scores['test'])}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from ..analysis.papers import papers_text

    print(papers_text(args.status), end="")
    return 0


def _own_task_row(name: str, data_dir: str) -> tuple[str, str, str, str, str]:
    """A listing row for a task outside the catalog: its files are read as ``tune`` reads them (the metric it would
    be scored with, whether its examples have options, inferred class labels included), quietly; a task whose files
    cannot be read says why in its type column."""
    import logging

    from ..tasks import load_task

    tasks_logger = logging.getLogger("taskspace.tasks")
    level = tasks_logger.level
    tasks_logger.setLevel(logging.ERROR)  # the listing states the metric and options; tune says how they came
    try:
        task = load_task(name, data_dir)
    except (DataError, ConfigError) as e:
        return name, "?", "unknown", f"not in the catalog; unreadable: {e}", "?"
    finally:
        tasks_logger.setLevel(level)
    has_options = any(e.options for split in (task.train, task.dev, task.test) for e in split)
    return name, task.metric, "unknown", "not in the catalog (your own data)", "yes" if has_options else "no"


def cmd_tasks(args: argparse.Namespace) -> int:
    from ..tasks import CATALOG, available_tasks

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
            # A task of the user's own: listed unless a catalog filter asks for what only the catalog knows, with
            # the metric and options tune would give it (read from its files, as tune reads them).
            if not (args.category or wanted_type):
                rows.append(_own_task_row(n, args.data_dir))
            continue
        if (args.category and info.category != args.category) or (wanted_type and info.type != wanted_type):
            continue
        rows.append((n, info.metric, info.category, info.type, "yes" if info.has_options else "no"))
    width = max((len(r[0]) for r in rows), default=4)
    print(f"{'task':<{width}}  {'metric':<19} {'category':<8} {'options':<7} type")
    for n, metric, cat, typ, opts in rows:
        print(f"{n:<{width}}  {metric:<19} {cat:<8} {opts:<7} {typ}")
    print(f"{len(rows)} tasks")
    if args.data_dir:
        from ..tasks.files import has_test_file

        missing = [r[0] for r in rows if r[0] in CATALOG and not has_test_file(args.data_dir, r[0])]
        if missing:
            print(f"{len(missing)} without a test file (a run scores dev only; --pool-test scores the held-out pool "
                  f"of the other seeds' files): {', '.join(missing)}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from ..deltas import METHODS

    budget = TuneConfig(task="", method="lora", data_dir="").train
    print(f"The training budget of tune and bank, every method (docs/budget.md says how it was chosen): "
          f"--steps {budget.steps} --batch-size {budget.batch_size} --eval-every {budget.eval_every} --patience "
          f"{budget.patience or 'none'}, {budget.optimizer} with {budget.schedule} decay, --max-grad-norm "
          f"{budget.max_grad_norm}; the learning rate is each method's (below).")
    for name, cls in METHODS.items():
        print(f"{name}: {cls.__doc__.strip().splitlines()[0]}")
        print(f"    default --lr {cls.default_lr}; per-example theta: {'yes' if cls.supports_per_example else 'no'}")
        for opt, default, help_text in cls.config_class.help():
            shown = ",".join(default) if isinstance(default, tuple) else str(default).lower() if isinstance(default, bool) else str(default)
            print(f"    --opt {(opt + '=' + shown):<44} {help_text}")
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from ..backbones import meta_backbone
    from ..deltas import build_method

    backbone = meta_backbone(args.backbone, family=args.family)
    method = build_method(args.method, backbone, parse_options(args.opt, method_fields(args.method), "--opt"))
    print(f"{args.method} on {args.backbone} ({backbone.model_type}, {backbone.num_parameters():,} frozen "
          f"parameters): D = {method.size:,}")
    if args.layout:
        for s in method.layout.slices:
            print(f"  {s.name:60s} {str(list(s.shape)):>16} offset {s.offset}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from ..tasks import available_tasks, write_tsv
    from ..tasks.catalog import CATALOG
    from ..tasks.files import task_files
    from ..tasks.formats import read_examples

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


def add_commands(sub) -> None:
    defaults = TuneConfig(task="", method="lora", data_dir="")
    t = sub.add_parser("tune", help="tune one delta method on one task and write a run directory",
                       description="Tune a delta method on a few-shot task; prints dev/test scores. Re-running "
                                   "the same command resumes an interrupted run.")
    t.add_argument("--task", required=True, help="task name (see `taskspace tasks`)")
    t.add_argument("--method", required=True, choices=method_names())
    add_preset_arg(t)
    add_backbone_args(t)
    add_data_args(t, TuneConfig, defaults, own_data=True)
    add_arguments(t, TuneConfig, defaults=defaults, only=("seed", "init_from", "keep_checkpoint"))
    t.add_argument("--opt", action="append", metavar="KEY=VALUE", help="method option (see `taskspace methods`)")
    add_train_args(t, defaults.train, default_text={"lr": "per method, see `taskspace methods`"})
    add_eval_args(t, TuneConfig, defaults)
    add_runs_out_args(t, "run directory name (default: <task>-<method>-<backbone>-d<data seed>-s<seed>-<hash of the "
                         "settings>, so that other settings never reuse a run)")
    t.set_defaults(func=cmd_tune)

    e = sub.add_parser("evaluate", help="re-evaluate a finished run's saved theta",
                       description="Load a run's theta (checking backbone and method) and evaluate it on the same "
                                   "dev and test examples; exits 1 if the scores differ from the saved ones.")
    e.add_argument("run", help="run directory")
    e.add_argument("--data-dir", help="data folder, if it moved since the run")
    e.add_argument("--dtype", choices=DTYPE_CHOICES,
                   help="the dtype of the backbone's weights (default: the run's setting, as this host resolves it)")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("predict", help="answer new inputs with a finished run's theta",
                       description="Load a finished tune or subspace-tune run (its backbone as recorded, its theta "
                                   "checked) and answer every input: JSON lines {\"input\": ..., \"options\": [...]} "
                                   "or plain lines of text. Prints one prediction per line (a line break inside one "
                                   "becomes a space), or writes --output (JSON lines with the inputs, exact, if it ends "
                                   "in .jsonl).")
    r.add_argument("run", help="run directory")
    r.add_argument("--input", default="-", help="input file, or - for standard input (default: -)")
    r.add_argument("--output", help="output file (default: standard output)")
    r.add_argument("--batch-size", type=int, help="inputs per batch (default: the run's evaluation batch size, "
                                                 "with which it answers its own test inputs exactly as it did)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_predict)

    g = sub.add_parser("plot", help="draw a run's training curves as a PNG next to its log.jsonl",
                       description="Write <run>/training.png: the training loss and the dev score at each evaluation, "
                                   "with the frozen backbone and the best step marked (needs matplotlib).")
    g.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    g.set_defaults(func=cmd_plot)

    mt = sub.add_parser("multitask", help="tune one theta on several tasks at once (IPT's Table IV baseline)",
                        description="Tune one delta method on the pooled training examples of several tasks (batches "
                                    "mix tasks), choosing the step by the mean dev score over the tasks; prints and "
                                    "writes every task's dev and test score with that one theta. Resumable.")
    add_tasks_args(mt, parts=["train"], parts_help="which lists of the split file (default: train)")
    mt.add_argument("--method", required=True, choices=method_names())
    mt.add_argument("--opt", action="append", metavar="KEY=VALUE", help="method option (see `taskspace methods`)")
    add_backbone_args(mt)
    mt.add_argument("--data-dir", help="folder of task folders (default: $TASKSPACE_DATA)")
    mdefaults = MultiTuneConfig(tasks=["x"], method="lora", data_dir="")
    add_arguments(mt, MultiTuneConfig, defaults=mdefaults, only=("k", "data_seed", "pool_test", "seed"))
    add_train_args(mt, mdefaults.train, default_text={"lr": "per method, see `taskspace methods`"})
    add_eval_args(mt, MultiTuneConfig, mdefaults)
    mt.add_argument("--out", required=True, help="run directory")
    mt.add_argument("--overwrite", action="store_true", help="delete an existing run directory first")
    mt.set_defaults(func=cmd_multitask)

    rp = sub.add_parser("reproduce", help="list every table and figure of both papers and what produces it here",
                        description="Every table and figure of IPT and UDT: the command or recipe stage that "
                                    "produces it in taskspace, the scale it has been run at here, and where the "
                                    "result is (docs/papers.md holds the same index).")
    rp.add_argument("--list", action="store_true", help="list the index (the default, and so far the only action)")
    rp.add_argument("--status", choices=["run", "code", "missing"], help="only the entries of this status")
    rp.set_defaults(func=cmd_reproduce)

    k = sub.add_parser("tasks", help="list the task catalog", description="List tasks with metric and category.")
    k.add_argument("--category", choices=["cls", "non-cls"])
    k.add_argument("--type", help="finer type, e.g. sentiment, NLI, multiple-choice QA")
    k.add_argument("--data-dir", help="only tasks present in this folder (or the one task it holds)")
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
    c.add_argument("--method", required=True, choices=method_names())
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
