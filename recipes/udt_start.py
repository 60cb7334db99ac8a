"""Where UDT's projections start: the same bank, the same fit, only the start changed (issue 31).

    python recipes/udt_start.py recipes/smol-udt.yaml --out runs/smol-udt --doc reports/smol-udt-start.md

The recipe's bank of the training tasks (its ``bank`` stage, built or reused in ``OUT/bank``, shared with
recipes/smol.py on the same ``--out``) and its unified fit (``udt.fit``) are fitted once per variant in ``STARTS``
(``OUT/udt-start/<name>``), everything else as the recipe says: ``zeros`` (the up-projections at zero, the
down-projections nn.Linear's uniform start: what recipes/smol-udt.yaml uses), ``normal`` (both from N(0, 0.02), the
authors' ``init_weight`` and the ``udt-paper`` preset's) and ``normal-adafactor`` (that start under the paper's
optimiser, in which nn.Linear's uniform start failed). For each fit the document gives the dev score the fit selects
on (the mean over methods and training tasks with equal mixing weights) at every evaluation, and, per method, the
relative error of each training task's solution decoded as validation decodes it, ``||up_m(mean_k down_k(delta_k)) -
delta_m|| / ||delta_m||`` (1.0 is the anchor: no change at all). Each fit is a stage, timed in
``OUT/udt-start/stages.json``; the numbers go to ``OUT/udt-start/results.json``; the same command resumes (a
finished fit is loaded, an interrupted one resumes from its checkpoint). ``--starts`` runs only some of them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from taskspace.backbones import load_backbone
from taskspace.errors import ConfigError
from taskspace.store import read_json, write_json, write_text
from taskspace.subspace import FitData, UnifiedConfig, build_bank

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the recipes' shared modules, also when imported
from recipe_common import Stages, fit_saved, read_recipe, run_main, stage_config  # noqa: E402
from smol import Runner  # noqa: E402
from smol_report.udt_start import STARTS, start_lines  # noqa: E402
from smol_settings import parts_of  # noqa: E402
from smol_stages.original import bank_specs, report_entry  # noqa: E402


def variant_settings(fit: dict, name: str) -> dict:
    """The recipe's fit settings with the variant's changes (its training settings merged)."""
    changes = dict(STARTS[name][0])
    train = {**fit.get("train", {}), **changes.pop("train", {})}
    return {**fit, **changes, "train": train}


def relative_errors(space, data: FitData) -> dict[str, dict[str, float | None]]:
    """Per method and training task: ``||up_m(I) - delta_m|| / ||delta_m||`` with ``I`` the methods' own intrinsic
    vectors mixed with equal weights (as the fit's validation decodes); None for a solution that is its anchor (no
    change to be relative to)."""
    deltas = {}
    for m in space.methods:
        thetas, anchor = data.solutions(m)
        deltas[m] = thetas - anchor
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
    lines = ["# Where UDT's projections start, on the same bank", "", "Command (from the repository root):", "",
             "```bash", f"python recipes/udt_start.py {args.config} --out {args.out} --doc {args.doc}", "```", ""]
    return "\n".join(lines + start_lines(cfg, results, seconds, source=args.config)[2:]) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--out", required=True)
    ap.add_argument("--doc", required=True)
    ap.add_argument("--starts", nargs="+", choices=list(STARTS), default=list(STARTS))
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "crossfit"))
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)
    parts = parts_of(read_recipe(args.config), Path(args.out))
    if len(parts) != 1 or "udt" not in parts[0][1]:
        raise ConfigError(f"{args.config}: expected a recipe of one part with a 'udt' section (its fit is the one "
                          "compared)")
    _, cfg, out = parts[0]
    folder = out / "udt-start"
    results = read_json(folder / "results.json") if (folder / "results.json").is_file() else {}
    stages = Stages(folder / "stages.json")
    if not args.report_only:
        run = Runner(cfg, out, args.data_dir, png=False)
        out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        run.backbone = load_backbone(cfg.get("backbone", "smollm2"), decode=cfg.get("decode", "generate"),
                                     **cfg.get("backbone_options", {}))
        run.bank_spec, _ = bank_specs(run)
        bank = run.stage("bank: training tasks", build_bank, out / "bank", run.bank_spec, run.backbone,
                         report=report_entry)
        data = FitData.from_bank(bank, run.train_tasks)
        for name in args.starts:
            config = stage_config(UnifiedConfig, variant_settings(cfg["udt"]["fit"], name))
            space = stages.run(f"fit: {name}", fit_saved, "unified", config, data, folder / name)
            results[name] = {"config": config.to_dict(), "dev": fit_log(folder / name),
                             "best_step": space.info.get("best_step"), "relative_error": relative_errors(space, data)}
            write_json(folder / "results.json", results)
            write_text(args.doc, document(cfg, args, results, stages.seconds))
    write_text(args.doc, document(cfg, args, results, stages.seconds))
    print(f"report: {args.doc}")


if __name__ == "__main__":
    run_main(main)
