"""One subspace fit of a recipe in several variants on the same bank: what a setting does, nothing else changed.

    python recipes/fit_variants.py recipes/smol-udt.yaml --compare udt-start --out runs/smol-udt \
        --doc reports/smol-udt-start.md
    python recipes/fit_variants.py recipes/smol-catalog.yaml --compare msf-balance --out runs/smol-catalog \
        --doc reports/smol-catalog-msf-balance.md [--finished-only]

The comparisons (``smol_report.variants.COMPARISONS``): ``udt-start``, the recipe's unified fit (``udt.fit``) with its
projections started at zero (recipes/smol-udt.yaml's), from N(0, 0.02) (the authors' code, the udt-paper preset's)
and from N(0, 0.02) under the paper's optimiser (in which nn.Linear's uniform start failed); ``msf-balance``, the
recipe's MSF (``ipt.msf`` at the recipe's largest d) as written, with alpha divided by 8 (the authors' balance
between the summed LM loss and the reconstruction at their batch of 64, 8 times the recipe's) and at batch 64 for an
eighth of the steps. The recipe's bank of the training tasks (its ``bank`` stage, built or reused in ``OUT/bank``,
shared with recipes/smol.py on the same ``--out``; ``--finished-only`` takes the training tasks whose entries are
finished and builds nothing, for a bank still being built) is fitted once per variant into
``OUT/variants/<comparison>/<variant>``. For each fit the document gives the dev score the fit selects on at every
evaluation and, per method, the relative error of each training task's solution decoded as validation decodes it (1.0
is the anchor: no change at all). Each fit is a stage, timed in ``OUT/variants/<comparison>/stages.json``; the numbers
go to its ``results.json``; the same command resumes (a finished fit is loaded, an interrupted one resumes from its
checkpoint). ``--variants`` runs only some of them. recipes/smol.py's report on the same ``--out`` includes each
comparison's section.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from taskspace.backbones import load_backbone
from taskspace.errors import ConfigError
from taskspace.store import read_json, write_json, write_text
from taskspace.subspace import FINDERS, Bank, FitData, build_bank
from taskspace.subspace.bank import entry_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the recipes' shared modules, also when imported
from recipe_common import Stages, fit_saved, read_recipe, run_main, stage_config  # noqa: E402
from smol import Runner  # noqa: E402
from smol_report.variants import COMPARISONS, variant_lines  # noqa: E402
from smol_settings import STAGES, parts_of  # noqa: E402
from smol_stages.original import bank_specs, report_entry  # noqa: E402


#: The recipe's bank stage (recipes/smol.py's name for it, so that either builds it once).
BANK_STAGE = "bank: training tasks"


def relative_errors(space, data: FitData) -> dict[str, dict[str, float | None]]:
    """Per method and training task: ``||up_m(I) - delta_m|| / ||delta_m||``, ``delta_m`` the bank's solution less
    the subspace's anchor and ``I`` the methods' own intrinsic vectors ``down_k(delta_k)`` mixed with equal weights
    (as UDT's validation decodes; for one method, its own: IPT's auto-encoder); None for a solution that is its
    anchor (no change to be relative to)."""
    deltas = {m: data.solutions(m)[0] - space.methods[m].anchor for m in space.methods}
    with torch.no_grad():
        mixed = sum(space.methods[m].down(deltas[m]) for m in space.methods) / len(space.methods)
        return {m: {t: (float((space.methods[m].up(mixed[i]) - deltas[m][i]).norm() / deltas[m][i].norm())
                        if bool(deltas[m][i].any()) else None)
                    for i, t in enumerate(data.tasks)}
                for m in space.methods}


def fit_log(folder: Path) -> list[tuple[int, float]]:
    """The fit's dev scores by step, from its training log."""
    log = folder / "fit" / "log.jsonl"
    if not log.is_file():
        return []
    return [(r["step"], r["dev"]) for r in map(json.loads, log.read_text().splitlines()) if "dev" in r]


def document(cfg: dict, args, results: dict, seconds: dict) -> str:
    recipe_stages = Path(args.out) / STAGES
    bank = read_json(recipe_stages).get(BANK_STAGE) if recipe_stages.is_file() else None
    body = variant_lines(args.compare, cfg, results, seconds, source=args.config, bank_seconds=bank)
    command = (f"python recipes/fit_variants.py {args.config} --compare {args.compare} --out {args.out} --doc "
               f"{args.doc}" + (" --finished-only" if args.finished_only else ""))
    return "\n".join([body[0].replace("## ", "# ", 1), "", "Command (from the repository root):", "", "```bash",
                      command, "```", *body[1:]]) + "\n"


def finished_tasks(out: Path, cfg: dict, backbone) -> tuple[Bank, list[str]]:
    """The recipe's bank as it stands, and its training tasks (in the recipe's order) whose entries of every method
    are finished; refused when fewer than two are."""
    if not (out / "bank" / "bank.json").is_file():
        raise ConfigError(f"--finished-only: {out / 'bank'} holds no bank yet (run the recipe first)")
    bank = Bank(out / "bank", backbone)
    done = [t for t in cfg["train_tasks"]
            if all((p / "scores.json").is_file() for m in cfg["bank"]["methods"]
                   for p in [entry_dir(bank.root, t, m, bank.spec.seeds[0])])]
    if len(done) < 2:
        raise ConfigError(f"--finished-only: {len(done)} of the bank's training tasks are finished; a fit needs two")
    return bank, done


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--compare", required=True, choices=list(COMPARISONS))
    ap.add_argument("--out", required=True)
    ap.add_argument("--doc", required=True)
    ap.add_argument("--variants", nargs="+", help="run only these variants (default: every one of the comparison)")
    ap.add_argument("--finished-only", action="store_true",
                    help="fit on the training tasks whose bank entries are finished, building nothing")
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "crossfit"))
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)
    comparison = COMPARISONS[args.compare]
    for name in args.variants or []:
        if name not in comparison.variants:
            raise ConfigError(f"--variants {name}: {args.compare} has the variants {', '.join(comparison.variants)}")
    parts = parts_of(read_recipe(args.config), Path(args.out))
    section = comparison.section[0]
    if len(parts) != 1 or section not in parts[0][1]:
        raise ConfigError(f"{args.config}: expected a recipe of one part with a '{section}' section (its fit is the "
                          "one compared)")
    _, cfg, out = parts[0]
    folder = out / "variants" / args.compare
    results = read_json(folder / "results.json") if (folder / "results.json").is_file() else {}
    stages = Stages(folder / "stages.json")
    if not args.report_only:
        run = Runner(cfg, out, args.data_dir, png=False)
        finder = FINDERS.lookup(comparison.finder)
        base = stage_config(finder.config_class, comparison.settings(cfg)).to_dict()
        configs = {n: stage_config(finder.config_class, comparison.variant_settings(base, n))
                   for n in args.variants or comparison.variants}  # every variant's settings checked first
        out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        run.backbone = load_backbone(cfg.get("backbone", "smollm2"), decode=cfg.get("decode", "generate"),
                                     **cfg.get("backbone_options", {}))
        if args.finished_only:
            bank, tasks = finished_tasks(out, cfg, run.backbone)
        else:
            run.bank_spec, _ = bank_specs(run)
            bank, tasks = run.stage(BANK_STAGE, build_bank, out / "bank", run.bank_spec, run.backbone,
                                    report=report_entry), run.train_tasks
        if results.get("setting", {}).get("tasks", tasks) != tasks:
            results = {}  # fitted on other tasks (a bank that has grown since): fitted again, on these
            for name in comparison.variants:
                shutil.rmtree(folder / name, ignore_errors=True)
        data = FitData.from_bank(bank, tasks)
        methods = finder(next(iter(configs.values()))).method_names()
        dev = [bank.score(t, m, split="dev") for t in tasks for m in methods]
        bank_dev = sum(dev) / len(dev) if None not in dev else None  # what the fits' dev scores are measured against
        results["setting"] = {"backbone": run.backbone.describe(), "threads": torch.get_num_threads(),
                              "tasks": list(tasks), "base": base, "bank_dev": bank_dev}
        for name, config in configs.items():
            space = stages.run(f"fit: {name}", fit_saved, comparison.finder, config, data, folder / name)
            results[name] = {"config": config.to_dict(), "dev": fit_log(folder / name),
                             "best_step": space.info.get("best_step"), "relative_error": relative_errors(space, data)}
            write_json(folder / "results.json", results)
            write_text(args.doc, document(cfg, args, results, stages.seconds))
    if not any(n in results for n in comparison.variants):
        raise ConfigError(f"{folder}: no fits yet (run without --report-only first)")
    write_text(args.doc, document(cfg, args, results, stages.seconds))
    print(f"report: {args.doc}")


if __name__ == "__main__":
    run_main(main)
