"""Which subspace of a finished recipe run ships: each candidate weighed in the form it would ship in, and the rule of
recipes/smol-catalog.yaml's header (fixed there before any IST result was seen) applied to the run's numbers.

    python recipes/ship_choice.py --run runs/smol-catalog --recipe recipes/smol-catalog.yaml \\
        --candidates ipt-d100 linear-d82 --against random-ae-d100 --decoder-only --dtype float16 [--check]

For each candidate (a subspace folder of the run, as recipes/ship_subspace.py's ``--subspace``): its E_rel on the
unseen tasks (per seed, the mean over the tasks of score / prompt tuning's mean score; then the mean over the seeds
with its 95 % interval, as the report computes it), its margin over the ``--against`` subspace (the random
auto-encoder) paired by seed, the megabytes (10^6 bytes) of the built-in it makes with these storage options, and
E_rel per megabyte. The candidate with the most E_rel per megabyte ships, among those whose margin's interval lies
above 0 (a subspace no better than a random one is not worth shipping at any size); none ships where no candidate's
does. Prints the table (markdown) and the decision, with the command that ships the chosen one.

Each candidate is shipped by ship_subspace.py into a temporary folder, refused as it refuses there (an unfinished
stage, a recipe that is not the run's, a built-in over ``taskspace.builtin.MAX_BYTES``), weighed and, with
``--check``, loaded and checked as ship_subspace.py's ``--check`` does; the folder is removed. Nothing is written.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import taskspace.builtin as builtin
from taskspace.analysis import mean_interval
from taskspace.errors import ConfigError, DataError
from taskspace.store import read_json
from taskspace.subspace.space import SUBSPACE_JSON

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the recipes' shared modules, also when imported
from recipe_common import run_main  # noqa: E402
from ship_subspace import RESULTS, check, recipe_command, recipe_part, ship, source_arguments, source_folder  # noqa: E402
from smol_report.relative import Numbers, ci  # noqa: E402

#: The name each candidate is shipped under in its temporary folder.
TRIAL = "candidate"


def seed_values(num: Numbers, key: str, tasks: list[str], method: str, where: str) -> list[float]:
    """Per seed, the E_rel of the runs recorded under ``key`` (``num.per_seed``); refused unless every seed ran on
    every task (a margin paired by seed needs both sides whole)."""
    values = num.per_seed(key, tasks, num.reference(method, tasks))
    if len(values) != len(num.seeds):
        raise ConfigError(f"{where}: {key} has run every unseen task on {len(values)} of the {len(num.seeds)} "
                          "seeds: the stage is unfinished (run the recipe again to finish it)")
    return values


def weigh(args: argparse.Namespace, cfg: dict, subspace: str) -> int:
    """The bytes of the built-in that ``subspace`` makes with ``args``' storage options (checked with
    ``--check``), shipped into a temporary folder that is then removed."""
    run = Path(args.run)
    with tempfile.TemporaryDirectory(prefix="ship-choice-") as tmp:
        out = Path(tmp)
        command = recipe_command(argparse.Namespace(**vars(args), report=None))
        target = ship(run, subspace, TRIAL, out, cfg, args.recipe, command, args.decoder_only, args.dtype)
        if args.check:
            print(check(TRIAL, out, run / subspace, read_json(run / RESULTS)["setting"]["describe"]))
        return builtin.folder_bytes(target)


def choose(args: argparse.Namespace) -> tuple[list[str], str | None]:
    """The table's lines and the chosen candidate (None: none ships)."""
    run = Path(args.run)
    if not run.is_dir():
        raise DataError("no such run folder", run)
    if len(set(args.candidates)) != len(args.candidates):
        raise ConfigError(f"--candidates {' '.join(args.candidates)}: a candidate is named twice")
    cfg = recipe_part(args.recipe, args.part, run.parent if args.part else run)
    against, against_key = source_folder(run, args.against, "--against")
    # every candidate there before any is weighed: its key in results.json
    keys = {subspace: source_folder(run, subspace, "--candidates")[1] for subspace in args.candidates}
    results = read_json(run / RESULTS)
    method = next(iter(read_json(against / SUBSPACE_JSON)["methods"]))
    num, unseen, where = Numbers(results, list(cfg["seeds"])), list(cfg["unseen_tasks"]), str(run / RESULTS)
    baseline = seed_values(num, against_key, unseen, method, where)
    form = " ".join(["decoder only" if args.decoder_only else "with its encoder", args.dtype])
    lines = [f"| candidate ({form}) | E_rel % | minus {args.against}, paired by seed | built-in MB | E_rel % per MB "
             "| beats random |", "| --- | ---: | ---: | ---: | ---: | :---: |"]
    best, best_value = None, None
    for subspace in args.candidates:
        megabytes = weigh(args, cfg, subspace) / 1e6  # refuses an unfinished stage or a mismatched recipe first
        values = seed_values(num, keys[subspace], unseen, method, where)
        centre, half, _ = mean_interval(values)
        margin = mean_interval([a - b for a, b in zip(values, baseline)])
        beats = margin[1] is not None and margin[0] - margin[1] > 0
        per_mb = centre / megabytes
        lines.append(f"| {subspace} | {ci(centre, half)} | {ci(*margin[:2])} | {megabytes:.2f} | "
                     f"{100 * per_mb:.2f} | {'yes' if beats else 'no'} |")
        if beats and (best_value is None or per_mb > best_value):
            best, best_value = subspace, per_mb
    return lines, best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source_arguments(ap)
    ap.add_argument("--candidates", nargs="+", required=True,
                    help="the run's subspace folders to choose from: ipt-d<d>, linear-d<d>")
    ap.add_argument("--against", required=True,
                    help="the subspace a candidate must beat, paired by seed (the random auto-encoder: random-ae-d<d>)")
    args = ap.parse_args(argv)
    lines, best = choose(args)
    print("\n".join(lines))
    if best is None:
        print(f"none ships: no candidate's margin over {args.against} has its 95 % interval above 0")
        return
    options = "".join([" --decoder-only" if args.decoder_only else "",
                       "" if args.dtype == "float32" else f" --dtype {args.dtype}"])
    part = f" --part {args.part}" if args.part else ""
    print(f"ships: {best} (the most E_rel per megabyte among the candidates that beat {args.against}):\n"
          f"    python recipes/ship_subspace.py --run {args.run} --recipe {args.recipe}{part} --subspace {best} "
          f"--name NAME{options} --check")


if __name__ == "__main__":
    run_main(main)
