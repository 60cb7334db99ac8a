"""The subspace commands of ``taskspace``: bank, fit-subspace, subspace-tune (transfer and the other analysis
commands: :mod:`taskspace.cli.analysis`)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..builtin import subspace_folder
from ..config import Config, add_arguments, flag, from_args
from ..errors import ConfigError
from ..presets import method_options, preset_values
from ..subspace.bank import BankSpec
from ..subspace.finders import FINDERS, finder_class
from ..subspace.tune import SubspaceTuneConfig
from ..tasks.selection import exclude_types, task_subset
from ..train import TrainConfig
from .common import (add_backbone_args, add_data_args, add_eval_args, add_preset_arg, add_tasks_args, add_train_args,
                     data_dir_from, known_tasks, load_backbone_from, method_names, method_options_from, output_folder,
                     stop_note, tasks_from, write_tables)


def _lrs_from(pairs: list[str] | None, methods: list[str]) -> dict[str, float]:
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


# ----------------------------------------------------------------------------------------------------------------


def bank_spec_from(args: argparse.Namespace) -> BankSpec:
    """The library's BankSpec with what the command line set."""
    methods = list(args.methods)
    options, lrs = method_options_from(args.opt, methods), _lrs_from(args.method_lr, methods)
    preset = preset_values(args.preset, "tuning") if args.preset else {}
    options = {m: {**preset.get("methods", {}).get(m, {}), **options[m]} for m in methods}
    lrs = {**{m: lr for m, lr in preset.get("lr", {}).items() if m in methods}, **lrs}
    base = BankSpec(tasks=tasks_from(args, args.parts), methods=options, data_dir=data_dir_from(args),
                    seeds=list(args.seeds), lr=lrs)
    return from_args(base.updated({"train": preset.get("train", {})}), args)


def cmd_bank(args: argparse.Namespace) -> int:
    from ..analysis.reports import bank_tables
    from ..subspace import build_bank

    output_folder(args.out, "--out")
    spec = bank_spec_from(args)
    known_tasks(spec.tasks, spec.data_dir)
    backbone = load_backbone_from(args)

    def report(task, method, seed, scores):
        test = "n/a" if scores.get("test") is None else f"{100 * scores['test']:.1f}"
        print(f"  {task:40s} {method:9s} seed {seed}: dev {100 * scores['dev']:.1f} test {test}", flush=True)

    from ..subspace.bank import shard

    rank, world = shard()
    bank = build_bank(args.out, spec, backbone, report=report, rank=rank, world=world)
    if rank == 0:  # several processes (torchrun): rank 0 checked the whole bank and writes its tables
        write_tables(bank_tables(bank, spec.tasks), Path(args.out), "scores")
    return 0


# ----------------------------------------------------------------------------------------------------------------


def _finder_fields(cls: type[Config]) -> set[str]:
    """The command-line names of a finder config's fields that change results (its training settings' included;
    runtime ones such as the progress bar are accepted by every finder)."""
    names = set()
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if isinstance(default, Config):
            names |= {g.name for g in dataclasses.fields(default) if g.name != "seed" and not g.metadata["runtime"]}
        elif f.metadata.get("cli", True) and not f.metadata.get("runtime"):
            names.add(f.name)
    return names


def finder_config_from(args: argparse.Namespace) -> Config:
    """The chosen finder's library config with what the command line set; an option of another finder is refused."""
    cls = finder_class(args.recipe).config_class
    own = _finder_fields(cls)
    every = set().union(*(_finder_fields(f.config_class) for f in FINDERS.values()))
    stray = sorted(name for name in every - own if name in vars(args))
    if stray:
        raise ConfigError(f"{flag(stray[0])}: not an option of --recipe {args.recipe} (its options: "
                          f"{', '.join(flag(n) for n in sorted(own))})")
    base = cls()
    if args.preset:
        base = base.updated(preset_values(args.preset, "fit-subspace", args.recipe))
    return from_args(base, args)


def finder_method_options(args: argparse.Namespace, methods: list[str]) -> dict[str, dict]:
    """The options of the methods a finder builds itself (without a bank): the preset's (their sizes), under
    ``--opt``."""
    preset = method_options(args.preset) if args.preset else {}
    return {m: {**preset.get(m, {}), **o} for m, o in method_options_from(args.opt, methods).items()}


def cmd_fit_subspace(args: argparse.Namespace) -> int:
    from ..store import exclusive

    out = output_folder(args.out, "--out")
    config = finder_config_from(args)  # checked before anything is loaded or written
    with exclusive(out):  # one process writes a subspace folder at a time
        return _fit_subspace(args, config, out)


def _fit_subspace(args: argparse.Namespace, config: Config, out: Path) -> int:
    from ..analysis.reports import reconstruction_table, shared_table
    from ..subspace import Bank, FitData, build_finder, fit_subspace
    from ..subspace.bank import BANK_FILE
    from ..subspace.reconstruction import reconstruction_scores, task_vector_scores

    finder = build_finder(args.recipe, config)
    methods = finder.method_names()
    bank = None
    if finder.needs_bank:
        if not args.bank:
            raise ConfigError(f"--recipe {args.recipe} fits a bank's solutions: pass --bank DIR")
        bank = Bank(args.bank, load_backbone_from(args, Path(args.bank) / BANK_FILE))
        backbone = bank.backbone
    else:
        backbone = load_backbone_from(args)
    tasks = tasks_from(args, ["train"]) if finder.needs_tasks else []
    if args.exclude_type:
        tasks = exclude_types(tasks, args.exclude_type)
        print(f"{len(tasks)} training tasks without type {', '.join(args.exclude_type)}: {', '.join(tasks)}")
    if args.task_fraction is not None:
        tasks = task_subset(tasks, args.task_fraction, args.subset_seed)
        print(f"{len(tasks)} training tasks ({100 * args.task_fraction:g} %, subset seed {args.subset_seed}): "
              f"{', '.join(tasks)}")
    if bank is not None:
        data = FitData.from_bank(bank, tasks)
    else:
        given = {name: value for name, value in vars(args).items() if name in ("k", "data_seed", "resample", "resample_k")}
        data = FitData(backbone, tasks, data_dir=data_dir_from(args) if finder.needs_tasks else None,
                       method_options=finder_method_options(args, methods), **given)
    space = fit_subspace(finder, data, out=out)
    print(f"{space.recipe} subspace, d = {space.d}, methods {list(space.methods)}: saved in {out}")
    tables = []
    if finder.needs_bank:
        for m in methods:
            scores, refs = reconstruction_scores(space, bank, tasks, m)
            tables.append(reconstruction_table(m, space.recipe, space.d, tasks, scores, refs))
    elif space.task_vectors is not None and args.bank:
        reference = Bank(args.bank, backbone)
        for m in methods:
            scores, refs = task_vector_scores(space, reference, tasks, m)
            tables.append(shared_table(m, space.d, tasks, scores, refs))
    if tables:
        write_tables(tables, out, "reconstruction" if finder.needs_bank else "relative")
    return 0


# ----------------------------------------------------------------------------------------------------------------


def subspace_tune_config_from(args: argparse.Namespace, recorded: dict | None = None) -> SubspaceTuneConfig:
    """The run's settings, lowest first: the library's defaults, what the subspace's JSON (``recorded``) holds
    under ``subspace_tune`` (a built-in: the training its card's scores were measured with), the preset, the command
    line. The method: ``--method``, else the subspace's only one."""
    recorded = recorded or {}
    method = args.method
    if method is None:
        methods = list(recorded.get("methods", {}))
        if len(methods) != 1:
            raise ConfigError(f"--method: expected one of the subspace's methods ({', '.join(methods)})")
        method = methods[0]
    base = SubspaceTuneConfig(task=args.task, method=method, data_dir=data_dir_from(args))
    if recorded.get("subspace_tune"):
        base = base.updated(recorded["subspace_tune"])
    if args.preset:
        base = base.updated(preset_values(args.preset, "subspace-tune"))
    return from_args(base, args)


def cmd_subspace_tune(args: argparse.Namespace) -> int:
    from ..analysis.reports import tuning_tables
    from ..store import read_json
    from ..subspace import Bank, Subspace, subspace_tune
    from ..subspace.space import SUBSPACE_JSON

    output_folder(args.out, "--out")
    recorded_in = subspace_folder(args.subspace) / SUBSPACE_JSON
    # the options are checked before a subspace that is not there is reported (unless it must name the method)
    readable = recorded_in.is_file() or args.method is None
    config = subspace_tune_config_from(args, read_json(recorded_in) if readable else None)
    backbone = load_backbone_from(args, recorded_in)
    space = Subspace.load(args.subspace, backbone)
    scores = subspace_tune(space, args.subspace, config, args.out, overwrite=args.overwrite)
    test = "n/a" if scores["test"] is None else f"{100 * scores['test']:.2f}"
    print(f"task {args.task} | {space.recipe} subspace (d = {space.d}) | method {config.method} | "
          f"dtype {str(backbone.dtype).removeprefix('torch.')} | dev {100 * scores['dev']:.2f} test {test}")
    if note := stop_note(scores):
        print(note)
    bank = Bank(args.bank, backbone) if args.bank else None
    write_tables(tuning_tables(f"{args.task}, {space.recipe} d={space.d}", [args.task], config.method,
                               [scores["test"]], bank), Path(args.out), "relative")
    return 0


# ----------------------------------------------------------------------------------------------------------------


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"


def cmd_subspaces(args: argparse.Namespace) -> int:
    from ..builtin import CARD, PREFIX, builtin_root, builtins

    found = builtins()
    if not found:
        print(f"No built-in subspaces are installed yet (they would be folders of {builtin_root()}).")
        return 0
    rows = [(PREFIX + b.name, b.backbone, b.template, b.recipe, str(b.d), ",".join(b.methods), _size(b.size),
             b.summary) for b in found]
    header = ("name", "backbone", "template", "recipe", "d", "methods", "size", "")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    print(f"{len(rows)} built-in subspace(s): --subspace {PREFIX}NAME; each one's card: "
          f"{builtin_root()}/NAME/{CARD}")
    return 0


# ----------------------------------------------------------------------------------------------------------------


def _add_finder_args(p: argparse.ArgumentParser) -> None:
    """One option per field of any finder's config; its help shows each finder's default where they differ."""
    configs = {name: cls.config_class() for name, cls in FINDERS.items()}
    done: set[str] = set()
    for name, config in configs.items():
        fields = [f.name for f in dataclasses.fields(config) if f.name not in done and not isinstance(
            getattr(config, f.name), Config)]
        text = {}
        for field_name in fields:
            values = {n: getattr(c, field_name) for n, c in configs.items() if hasattr(c, field_name)}
            shown = {str(v) if not isinstance(v, tuple) else " ".join(v) for v in values.values()}
            if len(shown) > 1 or len(values) < len(configs):
                text[field_name] = "; ".join(f"{n}: {v if not isinstance(v, tuple) else ' '.join(v)}"
                                             for n, v in values.items())
        add_arguments(p, type(config), defaults=config, only=fields, default_text=text)
        done |= set(fields)
    trained = {n: c.train for n, c in configs.items() if hasattr(c, "train")}
    text = {}
    for f in dataclasses.fields(TrainConfig):
        values = {n: getattr(t, f.name) for n, t in trained.items()}
        if len({str(v) for v in values.values()}) > 1:
            text[f.name] = "; ".join(f"{n}: {v}" for n, v in values.items())
    add_train_args(p, next(iter(trained.values())), default_text=text)


def add_commands(sub) -> None:
    defaults = BankSpec(tasks=[], methods={}, data_dir="")
    b = sub.add_parser("bank", help="tune methods on a list of tasks: a solution bank",
                       description="Tune each method on each task (and seed) into DIR/<task>/<method>/s<seed>; "
                                   "resumable; finished entries are verified. Writes scores tables. Launched by "
                                   "torchrun (torchrun --nproc-per-node N -m taskspace bank ...), the entries are "
                                   "shared out over the processes, and rank 0 checks the whole bank at the end.")
    b.add_argument("--out", required=True, help="bank folder")
    b.add_argument("--methods", nargs="+", required=True, choices=method_names())
    add_tasks_args(b, parts=["train", "test"])
    b.add_argument("--seeds", type=int, nargs="+", default=[0], help="initialisation / data-order seeds")
    b.add_argument("--opt", action="append", metavar="METHOD.KEY=VALUE", help="method option, e.g. lora.r=8")
    add_preset_arg(b)
    b.add_argument("--lr", action="append", dest="method_lr", metavar="METHOD=VALUE",
                   help="learning rate of a method (default: the method's, see `taskspace methods`)")
    add_backbone_args(b)
    add_data_args(b, BankSpec, defaults)
    add_train_args(b, defaults.train, exclude=("lr",))
    add_arguments(b, BankSpec, defaults=defaults, only=("eval_batch_size", "max_test_examples", "batched"))
    b.set_defaults(func=cmd_bank)

    f = sub.add_parser("fit-subspace", help=f"fit a subspace: {', '.join(FINDERS)}",
                       description="; ".join(f"{name}: {cls.summary}" for name, cls in FINDERS.items())
                                   + ". Writes the subspace and, for the finders that fit a bank, reconstruction "
                                     "tables of the training tasks. Each finder's defaults are the library's.")
    f.add_argument("--recipe", required=True, choices=list(FINDERS))
    f.add_argument("--out", required=True, help="subspace folder")
    f.add_argument("--bank", help="bank folder (ipt, unified, linear; shared: optional, for relative tables)")
    add_tasks_args(f, what="training task names", split_help="split file; its 'train' list is used")
    f.add_argument("--task-fraction", type=float, metavar="F",
                   help="fit on a seeded random F of the training tasks, 0 < F <= 1 (IPT's Fig. 7)")
    f.add_argument("--subset-seed", type=int, default=0, help="seed of the --task-fraction subset (default: 0)")
    f.add_argument("--exclude-type", action="append", metavar="TYPE",
                   help="leave out the training tasks of this catalog type, e.g. 'topic' (repeatable; IPT's Fig. 4: "
                        "IST on that type then measures what the other types' subspace holds of it)")
    f.add_argument("--opt", action="append", metavar="METHOD.KEY=VALUE", help="method option (shared, random-ae)")
    add_preset_arg(f)
    _add_finder_args(f)
    add_backbone_args(f, default=None)
    add_data_args(f, SubspaceTuneConfig, test=False)  # a fit scores dev sets only
    f.set_defaults(func=cmd_fit_subspace)

    defaults_t = SubspaceTuneConfig(task="", method="prompt", data_dir="")
    t = sub.add_parser("subspace-tune", help="tune a fresh intrinsic vector through a subspace's up-projection",
                       description="IPT's intrinsic subspace tuning / UDT's subspace optimisation: train only z "
                                   "(d numbers) through a method's frozen up-projection. The backbone is the one "
                                   "the subspace was fitted on, with its recorded settings (template, lengths, "
                                   "decode protocol, truncation), each replaced by an option given. It trains with "
                                   "AdamW and linear decay (the defaults below) unless the subspace records its own "
                                   "training (a built-in: what its card's scores were measured with); --preset "
                                   "udt-paper trains with Adafactor at a constant rate, as UDT does, --preset "
                                   "ipt-paper as IPT's IST; options typed override both. With --bank, writes the "
                                   "relative performance against the method in its original space.")
    t.add_argument("--subspace", required=True,
                   help="subspace folder, or builtin:NAME for one that ships with taskspace (`taskspace subspaces`)")
    t.add_argument("--task", required=True)
    t.add_argument("--method", choices=method_names(), help="the method whose up-projection decodes z (default: "
                                                            "the subspace's only method)")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--bank", help="bank folder with the original-space reference runs")
    t.add_argument("--overwrite", action="store_true")
    add_preset_arg(t)
    add_arguments(t, SubspaceTuneConfig, defaults=defaults_t, only=("z_init", "z_std", "seed"))
    add_backbone_args(t, default=None)
    add_data_args(t, SubspaceTuneConfig, defaults_t, own_data=True)
    add_train_args(t, defaults_t.train)
    add_eval_args(t, SubspaceTuneConfig, defaults_t)
    t.set_defaults(func=cmd_subspace_tune)

    ls = sub.add_parser("subspaces", help="list the subspaces that ship with taskspace (builtin:NAME)",
                        description="The built-in subspaces: name, backbone, input template, recipe, d, methods, "
                                    "size and the first line of each one's card. Any command that takes a subspace "
                                    "folder takes builtin:NAME; loading one checks the backbone's weights and template "
                                    "as for any subspace.")
    ls.set_defaults(func=cmd_subspaces)
