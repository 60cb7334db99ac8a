"""The subspace commands of ``taskspace``: bank, fit-subspace, subspace-tune, transfer."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from .cli import (
    METHOD_NAMES,
    _method_fields,
    add_backbone_args,
    add_data_args,
    add_eval_args,
    add_train_args,
    data_dir_from,
    load_backbone_from,
    output_folder,
    parse_options,
    train_config_from,
)
from .errors import ConfigError

RECIPES = ("ipt", "unified", "shared", "random-ae", "fastfood")


def method_options_from(pairs: list[str] | None, methods: list[str]) -> dict[str, dict[str, Any]]:
    """``--opt METHOD.key=value`` (several methods) to per-method option dicts."""
    out: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for pair in pairs or []:
        head, _, rest = pair.partition(".")
        if head not in out or not rest:
            raise ConfigError(f"--opt {pair!r}: expected METHOD.key=value with METHOD one of {methods}")
        out[head].update(parse_options([rest], _method_fields(head), f"--opt {head}."))
    return out


def lrs_from(pairs: list[str] | None, methods: list[str]) -> dict[str, float]:
    out = {}
    for pair in pairs or []:
        m, _, value = pair.partition("=")
        if m not in methods or not value:
            raise ConfigError(f"--lr {pair!r}: expected METHOD=VALUE with METHOD one of {methods}")
        try:
            out[m] = float(value)
        except ValueError:
            raise ConfigError(f"--lr {pair!r}: {value!r} is not a number") from None
    return out


def tasks_from(args: argparse.Namespace, parts: list[str]) -> list[str]:
    from .tasks import CATALOG
    from .tasks.formats import read_split_file

    if args.tasks:
        return list(args.tasks)
    if not args.split:
        raise ConfigError("name the tasks: --tasks T1 T2 ... or --split FILE.json")
    split = read_split_file(args.split, known_tasks=CATALOG)
    missing = [p for p in parts if p not in split]
    if missing:
        raise ConfigError(f"{args.split}: no {missing} list in this split file")
    return [t for p in parts for t in split[p]]


def _check(condition: bool, option: str, value, expected: str) -> None:
    """One numeric option checked before anything is loaded or written."""
    if not condition:
        raise ConfigError(f"{option} {value}: expected {expected}")


def _known_tasks(tasks: list[str], data_dir: str) -> None:
    from .tasks import CATALOG, available_tasks
    from .tasks.catalog import close_task_names

    present = set(available_tasks(data_dir))
    for task in tasks:
        if task not in present:
            close = [c for c in close_task_names(task, sorted(present | set(CATALOG))) if c != task]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"task {task!r} has no files in the data folder {data_dir}{hint}")


def _write_tables(tables, folder: Path, stem: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, table in enumerate(tables):
        table.write(folder / (stem if i == 0 else f"{stem}_{i}"))
    for table in tables:
        print(table.markdown())


# ----------------------------------------------------------------------------------------------------------------


def cmd_bank(args: argparse.Namespace) -> int:
    from .analysis.reports import bank_tables
    from .subspace import BankSpec, build_bank

    methods = list(args.methods)
    output_folder(args.out, "--out")
    tasks = tasks_from(args, args.parts)
    spec = BankSpec(
        tasks=tasks, methods=method_options_from(args.opt, methods), data_dir=data_dir_from(args), seeds=args.seeds,
        data_seed=args.data_seed, k=args.k, train=train_config_from(args, 1e-3), lr=lrs_from(args.lr, methods),
        max_test_examples=args.max_test_examples, eval_batch_size=args.eval_batch_size,
    )
    _known_tasks(tasks, spec.data_dir)
    backbone = load_backbone_from(args)

    def report(task, method, seed, scores):
        test = "n/a" if scores.get("test") is None else f"{100 * scores['test']:.1f}"
        print(f"  {task:40s} {method:9s} seed {seed}: dev {100 * scores['dev']:.1f} test {test}", flush=True)

    bank = build_bank(args.out, spec, backbone, report=report)
    _write_tables(bank_tables(bank, tasks), Path(args.out), "scores")
    return 0


def cmd_fit_subspace(args: argparse.Namespace) -> int:
    from .store import exclusive

    out = output_folder(args.out, "--out")
    recipe = args.recipe
    _check(args.d >= 1, "--d", args.d, "a positive intrinsic dimension")
    _check(args.hidden >= 1, "--hidden", args.hidden, "a positive hidden size")
    _check(math.isfinite(args.alpha) and args.alpha >= 0, "--alpha", args.alpha, "a finite weight >= 0")
    _check(math.isfinite(args.dist_weight) and args.dist_weight >= 0, "--dist-weight", args.dist_weight,
           "a finite weight >= 0")
    train_config_from(args, 1e-3).validate()
    with exclusive(out):  # one process writes a subspace folder at a time
        return _fit_subspace(args, out)


def _fit_subspace(args: argparse.Namespace, out: Path) -> int:
    from .analysis.reports import reconstruction_table, shared_table
    from .deltas import build_method
    from .subspace import (Bank, MSFConfig, SharedConfig, UnifiedConfig, fastfood_subspace, fit_msf, fit_shared,
                           fit_unified, random_autoencoder)
    from .subspace.bank import BANK_FILE

    recipe = args.recipe
    if recipe in ("ipt", "unified"):
        if not args.bank:
            raise ConfigError(f"--recipe {recipe} fits a bank's solutions: pass --bank DIR")
        bank = Bank(args.bank, load_backbone_from(args, Path(args.bank) / BANK_FILE))
        tasks = tasks_from(args, ["train"])
        if recipe == "ipt":
            method = args.method or "prompt"
            config = MSFConfig(d=args.d, hidden=args.hidden, alpha=args.alpha, seed=args.seed,
                               train=train_config_from(args, 1e-3))
            space = fit_msf(bank, method, tasks, config, out)
            tables = [reconstruction_table(space, bank, tasks, method)]
        else:
            methods = list(args.methods or ["adapter", "prefix", "lora"])
            config = UnifiedConfig(y=args.d, dist_weight=args.dist_weight, seed=args.seed,
                                   train=train_config_from(args, 1e-3))
            space = fit_unified(bank, methods, tasks, config, out)
            tables = [reconstruction_table(space, bank, tasks, m) for m in methods]
    elif recipe == "shared":
        methods = list(args.methods or ["adapter", "prefix", "lora"])
        backbone = load_backbone_from(args)
        config = SharedConfig(y=args.d, seed=args.seed, train=train_config_from(args, 1e-3))
        tasks = tasks_from(args, ["train"])
        space = fit_shared(backbone, method_options_from(args.opt, methods), tasks, data_dir_from(args), config, out,
                           k=args.k, data_seed=args.data_seed)
        tables = []
        if args.bank:
            bank = Bank(args.bank, backbone)
            tables = [shared_table(space, bank, tasks, m) for m in methods]
    else:
        backbone = load_backbone_from(args)
        if recipe == "random-ae":
            method = args.method or "prompt"
            opts = method_options_from(args.opt, [method])[method]
            space = random_autoencoder(backbone, build_method(method, backbone, opts), args.d, hidden=args.hidden,
                                       seed=args.seed)
        else:
            space = fastfood_subspace(backbone, args.d, mode=args.fastfood_mode, said=args.said, seed=args.seed)
        space.save(out)
        tables = []
    print(f"{space.recipe} subspace, d = {space.d}, methods {list(space.methods)}: saved in {out}")
    if tables:
        _write_tables(tables, out, "relative" if recipe == "shared" else "reconstruction")
    return 0


def cmd_subspace_tune(args: argparse.Namespace) -> int:
    from .analysis.reports import tuning_tables
    from .subspace import Bank, Subspace, SubspaceTuneConfig, subspace_tune
    from .subspace.space import SUBSPACE_JSON

    output_folder(args.out, "--out")
    _check(math.isfinite(args.z_std) and args.z_std > 0, "--z-std", args.z_std, "a positive, finite standard deviation")
    train_config_from(args, 1e-2).validate()
    backbone = load_backbone_from(args, Path(args.subspace) / SUBSPACE_JSON)
    space = Subspace.load(args.subspace, backbone)
    config = SubspaceTuneConfig(
        task=args.task, method=args.method, data_dir=data_dir_from(args), k=args.k, data_seed=args.data_seed,
        seed=args.seed, z_init=args.z_init, z_std=args.z_std, train=train_config_from(args, 1e-2),
        eval_batch_size=args.eval_batch_size, max_test_examples=args.max_test_examples,
    )
    scores = subspace_tune(space, args.subspace, config, args.out, overwrite=args.overwrite)
    test = "n/a" if scores["test"] is None else f"{100 * scores['test']:.2f}"
    print(f"task {args.task} | {space.recipe} subspace (d = {space.d}) | method {args.method} | "
          f"dev {100 * scores['dev']:.2f} test {test}")
    bank = Bank(args.bank, backbone) if args.bank else None
    _write_tables(tuning_tables(f"{args.task}, {space.recipe} d={space.d}", [args.task], args.method,
                                [scores["test"]], bank), Path(args.out), "relative")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from .analysis.reports import transfer_tables
    from .store import write_json
    from .subspace import Bank, Subspace, load_z, transfer
    from .subspace.space import SUBSPACE_JSON

    out = output_folder(args.out, "--out")
    backbone = load_backbone_from(args, Path(args.subspace) / SUBSPACE_JSON)
    space = Subspace.load(args.subspace, backbone)
    results: dict[str, dict[str, dict]] = {}
    for run in args.runs:
        _, saved = load_z(run)
        task, source = saved["run"]["task"], saved["run"]["method"]
        results.setdefault(task, {})[source] = transfer(space, args.subspace, run, targets=args.targets,
                                                        data_dir=args.data_dir)
    write_json(out / "transfer.json", results)
    bank = Bank(args.bank, backbone) if args.bank else None
    _write_tables(transfer_tables(results, bank), out, "transfer")
    return 0


# ----------------------------------------------------------------------------------------------------------------


def add_commands(sub) -> None:
    b = sub.add_parser("bank", help="tune methods on a list of tasks: a solution bank",
                       description="Tune each method on each task (and seed) into DIR/<task>/<method>/s<seed>; "
                                   "resumable; finished entries are verified. Writes scores tables.")
    b.add_argument("--out", required=True, help="bank folder")
    b.add_argument("--methods", nargs="+", required=True, choices=METHOD_NAMES)
    b.add_argument("--tasks", nargs="*", help="task names (or --split)")
    b.add_argument("--split", help="split file {'train': [...], 'dev': [...], 'test': [...]}")
    b.add_argument("--parts", nargs="+", default=["train", "test"], help="which lists of the split file")
    b.add_argument("--seeds", type=int, nargs="+", default=[0], help="initialisation / data-order seeds")
    b.add_argument("--opt", action="append", metavar="METHOD.KEY=VALUE", help="method option, e.g. lora.r=8")
    b.add_argument("--lr", action="append", metavar="METHOD=VALUE", help="learning rate of a method (default: per method)")
    add_backbone_args(b)
    add_data_args(b)
    add_train_args(b, steps=300, eval_every=50, with_lr=False)
    add_eval_args(b)
    b.set_defaults(func=cmd_bank)

    f = sub.add_parser("fit-subspace", help="fit a subspace: ipt, unified, shared, random-ae, fastfood",
                       description="ipt: IPT's multi-task subspace finding (auto-encoder of a bank's solutions); "
                                   "unified: UDT's subspace approximation over several methods' banks; shared: "
                                   "UDT's simplified variant (a trainable vector per task, no bank); random-ae: "
                                   "a random untrained auto-encoder; fastfood: a random Fastfood subspace of all "
                                   "backbone weights. Writes the subspace and, for ipt / unified, reconstruction "
                                   "tables of the training tasks.")
    f.add_argument("--recipe", required=True, choices=RECIPES)
    f.add_argument("--out", required=True, help="subspace folder")
    f.add_argument("--bank", help="bank folder (ipt, unified; shared: optional, for relative tables)")
    f.add_argument("--tasks", nargs="*", help="training task names (or --split)")
    f.add_argument("--split", help="split file; its 'train' list is used")
    f.add_argument("--method", choices=METHOD_NAMES, help="ipt / random-ae: the method (default prompt)")
    f.add_argument("--methods", nargs="+", choices=METHOD_NAMES, help="unified / shared (default adapter prefix lora)")
    f.add_argument("--opt", action="append", metavar="METHOD.KEY=VALUE", help="method option (shared, random-ae)")
    f.add_argument("--d", type=int, default=100, help="intrinsic dimension (UDT's y)")
    f.add_argument("--hidden", type=int, default=768, help="ipt / random-ae: hidden size of the decoder")
    f.add_argument("--alpha", type=float, default=200.0, help="ipt: weight of the reconstruction loss")
    f.add_argument("--dist-weight", type=float, default=10.0, help="unified: weight of the distance loss")
    f.add_argument("--fastfood-mode", default="per_tensor", choices=["per_tensor", "global"])
    f.add_argument("--said", action="store_true", help="fastfood: per-tensor scales (SAID) rather than DID")
    add_backbone_args(f)
    f.set_defaults(backbone=None)
    add_data_args(f)
    add_train_args(f, steps=300, eval_every=100, lr=1e-3)
    f.set_defaults(func=cmd_fit_subspace)

    t = sub.add_parser("subspace-tune", help="tune a fresh intrinsic vector through a subspace's up-projection",
                       description="IPT's intrinsic subspace tuning / UDT's subspace optimisation: train only z "
                                   "(d numbers) through a method's frozen up-projection. With --bank, writes the "
                                   "relative performance against the method in its original space.")
    t.add_argument("--subspace", required=True, help="subspace folder")
    t.add_argument("--task", required=True)
    t.add_argument("--method", required=True, choices=METHOD_NAMES)
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--bank", help="bank folder with the original-space reference runs")
    t.add_argument("--z-init", default="normal", choices=["normal", "zeros"])
    t.add_argument("--z-std", type=float, default=0.02)
    t.add_argument("--overwrite", action="store_true")
    add_backbone_args(t)
    t.set_defaults(backbone=None)
    add_data_args(t)
    add_train_args(t, steps=300, eval_every=50, lr=1e-2)
    add_eval_args(t)
    t.set_defaults(func=cmd_subspace_tune)

    x = sub.add_parser("transfer", help="decode subspace-tuned vectors with other methods' up-projections",
                       description="For each subspace-tune run, decode its z with every method of the subspace "
                                   "(no further training) and evaluate; writes transfer.json and the source -> "
                                   "target matrix of relative performance.")
    x.add_argument("--subspace", required=True)
    x.add_argument("--runs", nargs="+", required=True, help="subspace-tune run directories")
    x.add_argument("--out", required=True)
    x.add_argument("--bank", help="bank folder with the original-space reference runs")
    x.add_argument("--targets", nargs="*", choices=METHOD_NAMES, help="target methods (default: all of the subspace)")
    x.add_argument("--data-dir", help="data folder, if it moved since the runs")
    add_backbone_args(x)
    x.set_defaults(backbone=None, func=cmd_transfer)
