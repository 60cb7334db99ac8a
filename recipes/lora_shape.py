"""LoRA's shape on SmolLM2: which projections it adapts, chosen on dev.

    python recipes/lora_shape.py --out runs/lora-shape --doc docs/lora-shape.md

docs/budget.md chose LoRA's template and rate (boundary, lr 2e-3) at the library's shape: rank 8 on the attention's
query and value projections. This sweep keeps that template, the budget sweep's four tasks and files, and tune's
budget (200 steps of 8, linear decay, dev every 25 steps, early stopping after 3 evaluations), and varies the shape:
rank 8 on every projection of every layer (the attention's q, k, v and o, the feed-forward's input and output), at
the chosen rate and at a quarter of it (more adapted sites move the output further per step), then the library's
shape again. Early stopping only cuts a curve and the runs are deterministic, so the library's shape should give
docs/budget.md's dev scores of boundary, lr 2e-3 again.

The rule, fixed before any run: a shape replaces the library's only if its mean dev score over the four tasks beats
the library's by more than ``TIE`` points (a 16-example dev set moves by 6 points an example); test scores are
reported, never chosen on. Every finished result is kept in ``docs/lora-shape.json`` beside the document
(committed), so a lost run folder costs nothing; the same command resumes, ``--report-only`` writes the document.
"""

from __future__ import annotations

import sys
from pathlib import Path

from taskspace.backbones import load_backbone
from taskspace.store import read_json, write_json, write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the recipes' shared modules
from budget import TASKS, TIE, _mean, _pct, read_result, run_folder, run_one  # noqa: E402
from recipe_common import read_record, record_path, run_main, sweep_arguments  # noqa: E402

TEMPLATE = "boundary"
PATIENCE = 3
EVERY_PROJECTION = ["q", "k", "v", "o", "ffn_in", "ffn_out"]
#: (name, rate, LoRA options), in the order they run: the library's shape last (docs/budget.md has run it)
SHAPES: list[tuple[str, float, dict]] = [
    ("every projection, r 8, lr 2e-3", 2e-3, {"targets": EVERY_PROJECTION}),
    ("every projection, r 8, lr 5e-4", 5e-4, {"targets": EVERY_PROJECTION}),
    ("q v, r 8, lr 2e-3", 2e-3, {}),
]
LIBRARY = "q v, r 8, lr 2e-3"


def settings(args) -> str:
    return (f"{args.backbone}, template {TEMPLATE}, {args.steps} steps of {args.batch_size}, dev every "
            f"{args.eval_every}, patience {PATIENCE}, linear decay, test capped at {args.max_test_examples}, "
            "float32 weights")


def collect(out: Path, record: dict) -> dict:
    """Every finished result: the record's, overlaid by the run folders' ({shape: {task: result}}), each with the
    number of parameters it trained."""
    results = {shape: dict(tasks) for shape, tasks in record["results"].items()}
    for name, _, _ in SHAPES:
        for task in TASKS:
            folder = run_folder(out, "lora", TEMPLATE, name, task)
            result = read_result(folder)
            if result is not None:
                result["parameters"] = read_json(folder / "theta.json")["size"]
                results.setdefault(name, {})[task] = result
    return results


def choose(results: dict) -> tuple[str, str]:
    """The shape the rule picks, and why: the best mean dev among the shapes run on every task, if it beats the
    library's by more than ``TIE`` points; otherwise the library's."""
    whole = {name: _mean([r["dev"] for r in results[name].values()]) for name, _, _ in SHAPES
             if len(results.get(name, {})) == len(TASKS)}
    if LIBRARY not in whole:
        return LIBRARY, "the library's shape has not run on every task yet"
    best = max(whole, key=lambda n: (whole[n], n == LIBRARY))
    margin = 100 * (whole[best] - whole[LIBRARY])
    if best != LIBRARY and margin > TIE:
        return best, f"mean dev {_pct(whole[best])} against the library's {_pct(whole[LIBRARY])}"
    return LIBRARY, (f"no shape beats its mean dev {_pct(whole[LIBRARY])} by more than {TIE} points"
                     + ("" if best == LIBRARY else f" (best: {best}, {margin:+.1f})"))


def document(args, results: dict) -> str:
    lines = ["# LoRA's shape on SmolLM2", "",
             f"One `tune` run of LoRA per shape and task: {settings(args)}; 16-shot seed-100 files, answers generated. "
             "Made by `python recipes/lora_shape.py --out runs/lora-shape --doc docs/lora-shape.md`, which explains "
             f"the shapes and the rule: a shape replaces the library's (rank 8 on q and v) only if its mean dev beats "
             f"it by more than {TIE} points. Test is each run's test score at its best dev step, never chosen on. "
             "– : not run yet.", "",
             "| shape | parameters | " + " | ".join(f"{t} dev / test (best step)" for t in TASKS)
             + " | mean dev | mean test | minutes a run |",
             "| --- | ---: | " + " | ".join("---:" for _ in TASKS) + " | ---: | ---: | ---: |"]
    minutes = 0.0
    for name, _, _ in SHAPES:
        runs = results.get(name, {})
        done = [runs[t] for t in TASKS if t in runs]
        cells = [f"{_pct(runs[t]['dev'])} / {_pct(runs[t]['test'])} ({runs[t]['best_step']})" if t in runs else "–"
                 for t in TASKS]
        seconds = [r.get("seconds", 0.0) for r in done]
        minutes += sum(seconds) / 60
        part = "" if len(done) in (0, len(TASKS)) else f" ({len(done)} of {len(TASKS)})"
        size = f"{done[0]['parameters']:,}" if done else "–"
        per_run = f"{sum(seconds) / 60 / len(done):.1f}" if done else "–"
        lines.append(f"| {name} | {size} | " + " | ".join(cells) + f" | {_pct(_mean([r['dev'] for r in done]))}{part}"
                     f" | {_pct(_mean([r['test'] for r in done]))}{part} | {per_run} |")
    shape, why = choose(results)
    lines += ["", f"Chosen: **{shape}** ({why}).", "",
              f"{sum(len(r) for r in results.values())} runs finished, {minutes:.1f} minutes of wall time.", ""]
    return "\n".join(lines)


def write_outputs(args, record: dict) -> None:
    record = {**record, "results": collect(Path(args.out), record)}
    write_json(record_path(args.doc), record)
    write_text(args.doc, document(args, record["results"]))


def main() -> None:
    ap = sweep_arguments(__doc__.split("\n\n")[0], steps=200, batch_size=8, eval_every=25)
    args = ap.parse_args()
    record = read_record(record_path(args.doc), settings(args))
    if not args.report_only:
        backbone, done = None, collect(Path(args.out), record)  # read once: this loop adds to it run by run
        for config in SHAPES:
            for task in TASKS:
                if task in done.get(config[0], {}):
                    continue
                backbone = backbone or load_backbone(args.backbone, template=TEMPLATE)
                r = run_one(args, backbone, "lora", TEMPLATE, config, task, patience=PATIENCE)
                print(f"{config[0]:34s} {task:10s} dev {_pct(r['dev'])} test {_pct(r['test'])} step "
                      f"{r['best_step']} ({r.get('seconds', 0):.0f} s)", flush=True)
                write_outputs(args, record)
    write_outputs(args, record)


if __name__ == "__main__":
    run_main(main)
