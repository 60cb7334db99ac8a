"""The subspace commands of ``taskspace``: bank, fit-subspace, subspace-tune, transfer."""

from __future__ import annotations

import argparse
import json
import dataclasses
from pathlib import Path

from ..config import Config, add_arguments, flag, from_args
from ..errors import ConfigError
from ..presets import preset_values
from ..subspace.bank import BankSpec
from ..subspace.finders import FINDERS, finder_class
from ..subspace.tune import SubspaceTuneConfig
from ..tasks.selection import exclude_types, task_subset
from ..train import TrainConfig
from .common import (add_backbone_args, add_data_args, add_preset_arg, add_train_args, data_dir_from, known_tasks, load_backbone_from,
                     method_names, method_options_from, output_folder, tasks_from, write_tables)


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


def cmd_fit_subspace(args: argparse.Namespace) -> int:
    from ..store import exclusive

    out = output_folder(args.out, "--out")
    config = finder_config_from(args)  # checked before anything is loaded or written
    with exclusive(out):  # one process writes a subspace folder at a time
        return _fit_subspace(args, config, out)


def _fit_subspace(args: argparse.Namespace, config: Config, out: Path) -> int:
    from ..analysis.reports import reconstruction_table, shared_table
    from ..subspace import Bank, FitData, build_finder
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
                       method_options=method_options_from(args.opt, methods), **given)
    space = finder.fit(data, work_dir=out)
    space.save(out)
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


def subspace_tune_config_from(args: argparse.Namespace) -> SubspaceTuneConfig:
    base = SubspaceTuneConfig(task=args.task, method=args.method, data_dir=data_dir_from(args))
    if args.preset:
        base = base.updated(preset_values(args.preset, "subspace-tune"))
    return from_args(base, args)


def cmd_subspace_tune(args: argparse.Namespace) -> int:
    from ..analysis.reports import tuning_tables
    from ..subspace import Bank, Subspace, subspace_tune
    from ..subspace.space import SUBSPACE_JSON

    output_folder(args.out, "--out")
    config = subspace_tune_config_from(args)
    backbone = load_backbone_from(args, Path(args.subspace) / SUBSPACE_JSON)
    space = Subspace.load(args.subspace, backbone)
    scores = subspace_tune(space, args.subspace, config, args.out, overwrite=args.overwrite)
    test = "n/a" if scores["test"] is None else f"{100 * scores['test']:.2f}"
    print(f"task {args.task} | {space.recipe} subspace (d = {space.d}) | method {args.method} | "
          f"dtype {str(backbone.dtype).removeprefix('torch.')} | dev {100 * scores['dev']:.2f} test {test}")
    bank = Bank(args.bank, backbone) if args.bank else None
    write_tables(tuning_tables(f"{args.task}, {space.recipe} d={space.d}", [args.task], args.method,
                               [scores["test"]], bank), Path(args.out), "relative")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from ..analysis.reports import transfer_tables
    from ..store import write_json
    from ..subspace import Bank, Subspace, load_z, transfer
    from ..subspace.space import SUBSPACE_JSON

    out = output_folder(args.out, "--out")
    backbone = load_backbone_from(args, Path(args.subspace) / SUBSPACE_JSON)
    space = Subspace.load(args.subspace, backbone)
    results: dict[str, dict[str, dict]] = {}
    for run in args.runs:
        _, saved = load_z(run)
        task, source = saved["run"]["task"], saved["run"]["method"]
        results.setdefault(task, {})[source] = transfer(space, args.subspace, run, targets=args.targets,
                                                        data_dir=args.data_dir, selection=args.selection)
    write_json(out / "transfer.json", results)
    bank = Bank(args.bank, backbone) if args.bank else None
    tables = transfer_tables(results, bank)
    write_tables(tables, out, "transfer")
    matrix = tables[0]
    if any(v is not None for row in matrix.rows for v in row[1:]):
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            print("(no heat map of the transfer matrix: matplotlib is not installed; pip install 'taskspace[plots]')")
        else:
            from ..analysis.plots import heatmap

            path = heatmap(matrix.title + ": source (rows) -> target (columns), relative %", [r[0] for r in matrix.rows],
                           matrix.header[1:], [r[1:] for r in matrix.rows], out / "transfer.png")
            print(f"heat map: {path}")
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


def cmd_stability(args: argparse.Namespace) -> int:
    from ..analysis.stability import stability_table

    out = output_folder(args.out, "--out")
    write_tables(list(stability_table(args.runs)), out, "stability")
    return 0


def cmd_task_types(args: argparse.Namespace) -> int:
    from ..analysis.task_types import plot_types, type_table

    out = output_folder(args.out, "--out")
    tables = list(type_table(args.runs, args.references))
    write_tables(tables, out, "task_types")
    if not args.no_png:
        print(f"plot: {plot_types(tables[0], out / 'task_types.png')}")
    return 0


def cmd_pca(args: argparse.Namespace) -> int:
    from ..analysis.pca import points_of_runs, training_codes, write_pca
    from ..subspace import Bank, Subspace
    from ..subspace.space import SUBSPACE_JSON

    out = output_folder(args.out, "--out")
    points, folder = points_of_runs(args.runs)
    if args.bank:
        if folder is None or not Path(folder).is_dir():
            raise ConfigError(f"the runs' subspace folder {folder} is not there; the training codes need it")
        backbone = load_backbone_from(args, Path(folder) / SUBSPACE_JSON)
        space = Subspace.load(folder, backbone)
        from ..subspace import load_z

        method = load_z(args.runs[0])[1]["run"]["method"]
        points = training_codes(space, Bank(args.bank, backbone), method) + points
    summary = write_pca(points, out, png=not args.no_png)
    ev = summary["explained_variance"]
    print(f"{summary['points']} vectors; explained variance PC1 {100 * ev[0]:.1f} %, PC2 {100 * ev[1]:.1f} %; "
          f"{out / 'pca.csv'}" + ("" if args.no_png else f", {out / 'pca.png'}"))
    return 0


def cmd_landscape(args: argparse.Namespace) -> int:
    from ..analysis.landscape import landscape, plot_landscape
    from ..evaluation import capped_test_split
    from ..store import write_json
    from ..subspace import Bank, Subspace, load_z
    from ..subspace.space import SUBSPACE_JSON
    from ..subspace.tune import subspace_id
    from ..tasks import load_task
    from ..tasks.sources import Columns

    for option, value in (("--points-per-pass", args.points_per_pass), ("--batch-size", args.batch_size)):
        if value < 1:
            raise ConfigError(f"{option} {value}: expected a positive number")
    if len(args.runs) != 3:
        raise ConfigError(f"--runs: {len(args.runs)} given; expected three subspace-tune runs of one task (the "
                          "origin's, then the u and v directions': the paper's adapter, prefix, LoRA)")
    out = output_folder(args.out, "--out")
    backbone = load_backbone_from(args, Path(args.subspace) / SUBSPACE_JSON)
    space = Subspace.load(args.subspace, backbone)
    zs, order, task_of = {}, [], set()
    sha = subspace_id(args.subspace)["sha256"]
    for run in args.runs:
        z, saved = load_z(run)
        if saved["subspace"]["sha256"] != sha:
            raise ConfigError(f"{run} was tuned in another subspace than {args.subspace}")
        method = saved["run"]["method"]
        if method in zs:
            raise ConfigError(f"--runs: two runs of {method}; expected three different methods")
        zs[method] = z
        order.append(method)
        task_of.add((saved["run"]["task"], saved["run"]["data_dir"], saved["run"]["k"], saved["run"]["data_seed"],
                     json.dumps(saved["run"].get("columns", {})), saved["run"].get("max_test_examples"),
                     saved["run"].get("metric")))
    if len(task_of) != 1:
        raise ConfigError("--runs: the three runs were tuned on different tasks or data; a landscape is one task's")
    name, data_dir, k, data_seed, columns, max_test, metric = task_of.pop()
    task = load_task(name, args.data_dir or data_dir, k=k, seed=data_seed, metric=metric,
                     columns=Columns.from_dict(json.loads(columns)))
    examples = task.dev if args.split == "dev" else capped_test_split(task, max_test, 0)
    if not examples:
        raise ConfigError(f"--split {args.split}: the task has no {args.split} examples")
    bank = Bank(args.bank, backbone)
    references = {m: bank.score(name, m, args.split) for m in order}
    result = landscape(space, zs, order, examples, task.metric, references, out, span=args.span, step=args.step,
                       points_per_pass=args.points_per_pass, batch_size=args.batch_size)
    write_json(out / "landscape.json", {"task": name, "split": args.split, **result,
                                        "marks": {m: list(v) for m, v in result["marks"].items()}})
    print(f"origin ({order[0]}): " + ", ".join(f"{m} {100 * result['origin_score'].get(m, float('nan')):.1f}"
                                                for m in order) + f"; {out / 'landscape.json'}")
    if not args.no_png:
        print(plot_landscape(result, out / "landscape.png", f"{name}, {args.split}: {space.recipe} d={space.d}"))
    return 0


def add_commands(sub) -> None:
    defaults = BankSpec(tasks=[], methods={}, data_dir="")
    b = sub.add_parser("bank", help="tune methods on a list of tasks: a solution bank",
                       description="Tune each method on each task (and seed) into DIR/<task>/<method>/s<seed>; "
                                   "resumable; finished entries are verified. Writes scores tables. Launched by "
                                   "torchrun (torchrun --nproc-per-node N -m taskspace bank ...), the entries are "
                                   "shared out over the processes, and rank 0 checks the whole bank at the end.")
    b.add_argument("--out", required=True, help="bank folder")
    b.add_argument("--methods", nargs="+", required=True, choices=method_names())
    b.add_argument("--tasks", nargs="*", help="task names (or --split)")
    b.add_argument("--split", help="split file {'train': [...], 'dev': [...], 'test': [...]}")
    b.add_argument("--parts", nargs="+", default=["train", "test"], help="which lists of the split file")
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
    f.add_argument("--bank", help="bank folder (ipt, unified; shared: optional, for relative tables)")
    f.add_argument("--tasks", nargs="*", help="training task names (or --split)")
    f.add_argument("--split", help="split file; its 'train' list is used")
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
    add_data_args(f, SubspaceTuneConfig)
    f.set_defaults(func=cmd_fit_subspace)

    defaults_t = SubspaceTuneConfig(task="", method="prompt", data_dir="")
    t = sub.add_parser("subspace-tune", help="tune a fresh intrinsic vector through a subspace's up-projection",
                       description="IPT's intrinsic subspace tuning / UDT's subspace optimisation: train only z "
                                   "(d numbers) through a method's frozen up-projection. With --bank, writes the "
                                   "relative performance against the method in its original space.")
    t.add_argument("--subspace", required=True, help="subspace folder")
    t.add_argument("--task", required=True)
    t.add_argument("--method", required=True, choices=method_names())
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--bank", help="bank folder with the original-space reference runs")
    t.add_argument("--overwrite", action="store_true")
    add_preset_arg(t)
    add_arguments(t, SubspaceTuneConfig, defaults=defaults_t, only=("z_init", "z_std", "seed"))
    add_backbone_args(t, default=None)
    add_data_args(t, SubspaceTuneConfig, defaults_t, own_data=True)
    add_train_args(t, defaults_t.train)
    add_arguments(t, SubspaceTuneConfig, defaults=defaults_t, only=("eval_batch_size", "max_test_examples"))
    t.set_defaults(func=cmd_subspace_tune)

    st = sub.add_parser("stability", help="std of test scores over seeds, per kind of run (IPT's Table III)",
                        description="Group finished tune and subspace-tune runs by kind (method, or subspace recipe, "
                                    "d and method) and task; report the standard deviation of the test scores over "
                                    "each task's seeds, averaged over tasks. Writes stability.md/.csv tables.")
    st.add_argument("--runs", nargs="+", required=True, help="run directories (several seeds per task)")
    st.add_argument("--out", required=True, help="output folder for the tables")
    st.set_defaults(func=cmd_stability)

    ty = sub.add_parser("task-types", help="IST per fine-grained task type, included in / excluded from the "
                                           "subspace's training tasks (IPT's Fig. 4)",
                        description="Group finished subspace-tune runs by their task's catalog type and by whether "
                                    "the subspace's training tasks held that type (fit-subspace --exclude-type "
                                    "TYPE makes the excluded ones); report E_rel against the reference runs "
                                    "(prompt tuning) per type and setting. Writes task_types.md/.csv and "
                                    "task_types.png.")
    ty.add_argument("--runs", nargs="+", required=True, help="subspace-tune run directories")
    ty.add_argument("--references", nargs="+", required=True,
                    help="reference run directories (tune runs, e.g. prompt tuning, of the same tasks)")
    ty.add_argument("--out", required=True, help="output folder")
    ty.add_argument("--no-png", action="store_true", help="the tables only (no matplotlib needed)")
    ty.set_defaults(func=cmd_task_types)

    pc = sub.add_parser("pca", help="PCA of the intrinsic vectors of subspace-tune runs (IPT's Fig. 8)",
                        description="Project the z of subspace-tune runs (one subspace), and with --bank the codes "
                                    "of the subspace's training tasks, on two principal components; writes pca.csv "
                                    "and pca.png (points coloured by cls / non-cls) and prints the explained "
                                    "variance.")
    pc.add_argument("--runs", nargs="+", required=True, help="subspace-tune run directories")
    pc.add_argument("--bank", help="the bank the subspace was fitted to: adds its training tasks' codes")
    pc.add_argument("--out", required=True, help="output folder")
    pc.add_argument("--no-png", action="store_true", help="the CSV only (no matplotlib needed)")
    add_backbone_args(pc, default=None)
    pc.set_defaults(func=cmd_pca)

    ls = sub.add_parser("landscape", help="UDT's 2-d performance landscape through three methods' solutions",
                        description="The plane through three subspace-tune runs' intrinsic vectors of one task "
                                    "(origin: the first run's; u towards the second; v towards the third, made "
                                    "orthogonal), evaluated on a grid: each method decodes every point and scores "
                                    "it relative to its original-space score in the bank. Resumable "
                                    "(landscape.jsonl); writes landscape.json and landscape.png.")
    ls.add_argument("--subspace", required=True, help="the unified subspace folder")
    ls.add_argument("--runs", nargs=3, required=True, metavar="RUN",
                    help="subspace-tune runs of one task: origin, u, v (the paper: adapter, prefix, LoRA)")
    ls.add_argument("--bank", required=True, help="bank with the methods' original-space scores")
    ls.add_argument("--out", required=True, help="output folder")
    ls.add_argument("--span", type=float, default=4.0, help="grid from -span to span (default: 4, the paper's)")
    ls.add_argument("--step", type=float, default=0.4, help="grid step (default: 0.4, the paper's)")
    ls.add_argument("--split", choices=["dev", "test"], default="dev", help="split to score (default: dev)")
    ls.add_argument("--points-per-pass", type=int, default=8, help="grid points per batch of forward passes")
    ls.add_argument("--batch-size", type=int, default=32, help="examples per forward pass")
    ls.add_argument("--data-dir", help="data folder, if it moved since the runs")
    ls.add_argument("--no-png", action="store_true", help="no heat maps (no matplotlib needed)")
    add_backbone_args(ls, default=None)
    ls.set_defaults(func=cmd_landscape)

    x = sub.add_parser("transfer", help="decode subspace-tuned vectors with other methods' up-projections",
                       description="For each subspace-tune run, decode its z with every method of the subspace "
                                   "(no further training) and evaluate; writes transfer.json and the source -> "
                                   "target matrix of relative performance (a table, and with --bank a heat map, "
                                   "transfer.png).")
    x.add_argument("--subspace", required=True)
    x.add_argument("--runs", nargs="+", required=True, help="subspace-tune run directories")
    x.add_argument("--out", required=True)
    x.add_argument("--bank", help="bank folder with the original-space reference runs")
    x.add_argument("--targets", nargs="*", choices=method_names(), help="target methods (default: all of the subspace)")
    x.add_argument("--data-dir", help="data folder, if it moved since the runs")
    x.add_argument("--selection", choices=["paper", "source"], default="paper",
                   help="which step's z each target decodes: the one whose transferred result is best on dev (the "
                        "paper), or the source method's best step (the authors' code) (default: paper)")
    add_backbone_args(x, default=None)
    x.set_defaults(func=cmd_transfer)
