"""The analysis commands of ``taskspace``: stability, task-types, pca, landscape, transfer (what finished runs,
banks and subspaces show: the papers' tables and figures beyond tuning)."""

from __future__ import annotations

import argparse
import json

from ..builtin import subspace_folder
from ..errors import ConfigError
from .common import add_backbone_args, load_backbone_from, method_names, output_folder, write_tables


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
        if folder is None or not subspace_folder(folder).is_dir():
            raise ConfigError(f"the runs' subspace folder {folder} is not there; the training codes need it")
        backbone = load_backbone_from(args, subspace_folder(folder) / SUBSPACE_JSON)
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
    from ..subspace.tune import same_subspace, subspace_id
    from ..tasks import load_task
    from ..tasks.sources import Columns

    for option, value in (("--points-per-pass", args.points_per_pass), ("--batch-size", args.batch_size)):
        if value < 1:
            raise ConfigError(f"{option} {value}: expected a positive number")
    if len(args.runs) != 3:
        raise ConfigError(f"--runs: {len(args.runs)} given; expected three subspace-tune runs of one task (the "
                          "origin's, then the u and v directions': the paper's adapter, prefix, LoRA)")
    out = output_folder(args.out, "--out")
    backbone = load_backbone_from(args, subspace_folder(args.subspace) / SUBSPACE_JSON)
    space = Subspace.load(args.subspace, backbone)
    zs, order, task_of = {}, [], set()
    recorded = subspace_id(args.subspace)
    for run in args.runs:
        z, saved = load_z(run)
        if not same_subspace(saved["subspace"], recorded):
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
                                                for m in order)
          + f"; E_PET (the mean original score) {100 * result['e_pet']:.1f}; {out / 'landscape.json'}")
    if not args.no_png:
        print(plot_landscape(result, out / "landscape.png", f"{name}, {args.split}: {space.recipe} d={space.d}"))
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from ..analysis.reports import transfer_tables
    from ..store import write_json
    from ..subspace import Bank, Subspace, load_z, transfer
    from ..subspace.space import SUBSPACE_JSON

    out = output_folder(args.out, "--out")
    backbone = load_backbone_from(args, subspace_folder(args.subspace) / SUBSPACE_JSON)
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


def add_commands(sub) -> None:
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
                                    "it; a point's value is the paper's P, the methods' mean score over E_PET, the "
                                    "mean of their original-space scores in the bank (each method's own ratio is "
                                    "kept beside it). Resumable (landscape.jsonl); writes landscape.json and "
                                    "landscape.png.")
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
