"""How long and how fast each method should learn: a small sweep on SmolLM2, selected on dev, reported on test.

    python recipes/budget.py --out runs/budget --doc docs/budget.md [--methods prompt lora ...]

For each method, each of its configurations (a learning rate, for prompt tuning also the initialisation) and each
template it is swept in (prompt tuning and LoRA: ``chat`` and ``boundary``; the others: the backbone's default),
one ``tune`` run per task (two tasks with options, two generative; 16-shot seed-100 files, test capped at 100
examples) of ``--steps`` steps of ``--batch-size``, linear decay, dev evaluated every ``--eval-every`` steps. Prompt
tuning and LoRA run without early stopping, so that each run's log holds its whole dev curve: their curves chose
the library's patience (3 evaluations; both memorise the training set within 100 steps and no dev score rose
after that). The other methods then run with that patience (``STOP_PATIENCE``), which costs a third less; their
curves end where the run stopped, so their tables hold only the patiences below it. The document then reads, on
dev only:

- the configuration and template with the best mean dev score over the tasks (test reported beside it);
- how the mean best-so-far dev score grows with the steps (where learning finishes);
- what early stopping with a patience of p evaluations would have kept and saved on these curves.

A run's curve comes from one run of ``--steps`` steps with linear decay: a shorter run decays sooner, so the
best-so-far column says where the long run stopped improving, not exactly what a shorter run would reach. The
document is written again after every finished run; the same command resumes (finished runs are verified and
reused). ``--report-only`` writes it from finished runs without training.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from taskspace.backbones import load_backbone
from taskspace.store import read_json, write_json, write_text
from taskspace.tuning import TuneConfig, tune

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the recipes' shared modules
from recipe_common import now, run_main, sweep_arguments  # noqa: E402

TASKS = ["glue-sst2", "ag_news", "lama-trex", "tweet_qa"]
#: method -> configurations: (name, learning rate, method options)
GRID: dict[str, list[tuple[str, float, dict]]] = {
    "prompt": [("lr 0.03", 0.03, {}), ("lr 0.3", 0.3, {}), ("lr 0.3, init vocab", 0.3, {"init": "vocab"})],
    "lora": [("lr 5e-4", 5e-4, {}), ("lr 2e-3", 2e-3, {})],
    "prefix": [("lr 3e-3", 3e-3, {}), ("lr 1e-2", 1e-2, {})],
    "adapter": [("lr 5e-4", 5e-4, {}), ("lr 2e-3", 2e-3, {})],
    "bitfit": [("lr 5e-3", 5e-3, {}), ("lr 2e-2", 2e-2, {})],
    "finetune": [("lr 2e-5", 2e-5, {}), ("lr 1e-4", 1e-4, {})],
}
SWEPT_TEMPLATES = {"prompt": ("chat", "boundary"), "lora": ("chat", "boundary")}
PATIENCES = (1, 2, 3, 4, 6)
#: The methods whose whole curves are read (no early stopping); the others stop with STOP_PATIENCE evaluations,
#: the patience those curves chose (docs/budget.md).
WHOLE_CURVES = ("prompt", "lora")
STOP_PATIENCE = 3

#: Mean dev scores this close (points) count as a tie, broken by the shorter examples.
TIE = 2.0


def patience_of(method: str) -> int | None:
    """The early-stopping patience ``method``'s sweep runs with: none for the methods whose whole curves are read."""
    return None if method in WHOLE_CURVES else STOP_PATIENCE


def template_cost(backbone, data_dir: str) -> float:
    """The mean length in tokens of a training example (input in the template, then the answer) over the tasks: what
    a template adds to every step's cost."""
    from taskspace.tasks import load_task

    lengths = [len(backbone._prompt_ids(e)) + len(backbone._answer_ids(e.target))
               for task in TASKS for e in load_task(task, data_dir).train]
    return sum(lengths) / len(lengths)


def _slug(name: str) -> str:
    return name.replace(", ", "-").replace(" ", "")


def run_folder(out: Path, method: str, template: str, config: str, task: str) -> Path:
    return out / method / template / _slug(config) / task


def run_one(args, backbone, method: str, template: str, config: tuple, task: str,
            patience: int | None | str = "sweep's") -> dict:
    """One ``tune`` run of ``config`` (name, rate, method options) on ``task``, with early stopping after
    ``patience`` evaluations (by default the sweep's for ``method``: :func:`patience_of`); its result."""
    name, lr, options = config
    patience = patience_of(method) if patience == "sweep's" else patience
    folder = run_folder(Path(args.out), method, template, name, task)
    tc = TuneConfig(task=task, method=method, method_options=dict(options), data_dir=args.data_dir,
                    backbone=args.backbone, backbone_options={"template": template},
                    max_test_examples=args.max_test_examples)
    tc.train = tc.train.replace(steps=args.steps, batch_size=args.batch_size, eval_every=args.eval_every, lr=lr,
                                patience=patience, progress=False)
    started = now()
    tune(tc, folder, backbone=backbone)
    if not (folder / "timing.json").is_file():
        write_json(folder / "timing.json", {"seconds": round(now() - started, 1)})
    return read_result(folder)


def read_result(folder: Path) -> dict | None:
    if not (folder / "scores.json").is_file():
        return None
    log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
    curve = [(e["step"], e["dev"]) for e in log if "dev" in e]
    timing = folder / "timing.json"  # missing when the invocation ended between the run and its timing
    return {**read_json(folder / "scores.json"), **(read_json(timing) if timing.is_file() else {}), "curve": curve}


def best_so_far(curve: list, upto: int) -> float:
    return max(d for s, d in curve if s <= upto)


def with_patience(curve: list, patience: int) -> tuple[float, int]:
    """The dev score early stopping with ``patience`` evaluations would have kept, and the last step it trained,
    counted as :func:`taskspace.train.train` counts: evaluations of trained states only; the untrained state (step
    0) is kept when it is strictly better than every trained one."""
    initial = curve[0][1] if curve[0][0] == 0 else None
    best, bad, last = None, 0, curve[-1][0]
    for step, dev in (c for c in curve if c[0] > 0):
        if best is None or dev > best:
            best, bad = dev, 0
        else:
            bad += 1
        if bad >= patience:
            last = step
            break
    return (initial if initial is not None and initial > best else best), last


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _pct(x):
    return "–" if x is None else f"{100 * x:.1f}"


def document(args, results: dict, cost: dict | None = None) -> str:
    cost = cost if cost is not None else {}
    lines = [
        "# Training budget: what each method needs on SmolLM2",
        "",
        f"One `tune` run per method, configuration, template and task on {args.backbone} (float32 weights), "
        f"16-shot seed-100 files, {args.steps} steps of {args.batch_size} with linear decay, dev every "
        f"{args.eval_every} steps, answers generated, test capped at {args.max_test_examples} examples; "
        f"{' and '.join(WHOLE_CURVES)} without early stopping (their whole dev curves chose the patience), the other "
        f"methods with early stopping after {STOP_PATIENCE} evaluations without a better dev score (their curves end "
        f"where they stopped). Tasks: {', '.join(TASKS)}. Made by `python recipes/budget.py --out runs/budget --doc "
        "docs/budget.md`. Selection is on dev only: the configuration and template with the best mean over the "
        f"tasks of the best dev score, or, among those within {TIE} points of it (a 16-example dev set moves by "
        "6 points an example), the one whose examples are shortest in tokens (its steps cost least). Test is the "
        "run's test score at its best dev step. – : not run yet.",
        "",
    ]
    minutes = 0.0
    for method, configs in GRID.items():
        templates = SWEPT_TEMPLATES.get(method, (args.template,))
        cells = {(t, c[0]): [results.get((method, t, c[0], task)) for task in TASKS] for t in templates
                 for c in configs}
        if not any(r for rs in cells.values() for r in rs):
            continue
        lines += [f"## {method}", "",
                  "| template | configuration | " + " | ".join(f"{t} dev / test (best step)" for t in TASKS)
                  + " | mean dev | mean test |",
                  "| --- | --- | " + " | ".join("---:" for _ in TASKS) + " | ---: | ---: |"]
        ranked = []
        for (template, name), rs in cells.items():
            row = []
            for r in rs:
                if r is None:
                    row.append("–")
                    continue
                minutes += r.get("seconds", 0.0) / 60
                row.append(f"{_pct(r['dev'])} / {_pct(r['test'])} ({r['best_step']})")
            done = [r for r in rs if r is not None]
            dev, test = _mean([r["dev"] for r in done]), _mean([r["test"] for r in done])
            if len(done) == len(TASKS):
                ranked.append((dev, template, name, rs))
            part = "" if len(done) in (0, len(TASKS)) else f" ({len(done)} of {len(TASKS)} tasks)"
            lines.append(f"| {template} | {name} | " + " | ".join(row) + f" | {_pct(dev)}{part} | {_pct(test)}{part} |")
        lines.append("")
        if not ranked:
            continue
        best = max(r[0] for r in ranked)
        near = [r for r in ranked if 100 * (best - r[0]) <= TIE]
        dev, template, name, rs = min(near, key=lambda r: (cost.get(r[1], float("inf")), -r[0]))
        lengths = ", ".join(f"{t} {n:.0f}" for t, n in sorted(cost.items()) if t in {r[1] for r in near})
        lines += [f"Chosen: **{template}, {name}** (mean dev {_pct(dev)}; best {_pct(best)}"
                  + (f"; mean tokens per training example within {TIE} points of it: {lengths}" if len(near) > 1
                     and lengths else "") + ").", ""]
        steps = list(range(args.eval_every, args.steps + 1, args.eval_every))
        lines += ["Mean best-so-far dev score by step (this configuration):", "",
                  "| step | " + " | ".join(str(s) for s in steps) + " |",
                  "| --- | " + " | ".join("---:" for _ in steps) + " |",
                  "| dev | " + " | ".join(_pct(_mean([best_so_far(r["curve"], s) for r in rs])) for s in steps)
                  + " |", ""]
        lines += ["Early stopping on these curves (patience in evaluations):", "",
                  "| patience | mean dev kept | mean steps trained |", "| ---: | ---: | ---: |"]
        stop = patience_of(method)  # a curve cut by early stopping says nothing of a longer patience
        for p in (p for p in PATIENCES if stop is None or p < stop):
            kept = [with_patience(r["curve"], p) for r in rs]
            lines.append(f"| {p} | {_pct(_mean([k[0] for k in kept]))} | {_mean([k[1] for k in kept]):.0f} |")
        lines.append(f"| none | {_pct(dev)} | {args.steps} |" if stop is None else
                     f"| {stop} (run) | {_pct(dev)} | {_mean([r['curve'][-1][0] for r in rs]):.0f} |")
        keeps = [p for p in PATIENCES if (stop is None or p < stop)
                 and all(with_patience(r["curve"], p)[0] >= max(d for _, d in r["curve"]) for r in rs)]
        if keeps:
            lines += ["", f"The smallest patience that keeps every task's best dev score on these curves: {keeps[0]}."]
        lines.append("")
    lines += [f"{len(results)} runs finished, {minutes:.1f} minutes of wall time (frozen evaluations included).", ""]
    return "\n".join(lines)


def main() -> None:
    ap = sweep_arguments(__doc__.split("\n\n")[0], steps=200, batch_size=8, eval_every=25)
    ap.add_argument("--methods", nargs="+", default=list(GRID), choices=list(GRID))
    ap.add_argument("--template", default="chat", help="the template of the methods whose template is not swept")
    ap.add_argument("--templates", nargs="+", choices=("chat", "boundary", "plain"),
                    help="run only these templates (default: every template the method is swept in)")
    ap.add_argument("--configs", nargs="+", help="run only these configurations (by name, e.g. 'lr 0.3')")
    args = ap.parse_args()
    out = Path(args.out)
    results: dict = {}
    cost_file = out / "template-cost.json"  # mean tokens per training example in each template
    cost = read_json(cost_file) if cost_file.is_file() else {}
    if not args.report_only:
        for template in {t for m in args.methods for t in SWEPT_TEMPLATES.get(m, (args.template,))} - set(cost):
            cost[template] = round(template_cost(load_backbone(args.backbone, template=template), args.data_dir), 1)
        write_json(cost_file, cost)
    for method, configs in GRID.items():
        for template in SWEPT_TEMPLATES.get(method, (args.template,)):
            for name, *_ in configs:
                for task in TASKS:
                    r = read_result(run_folder(out, method, template, name, task))
                    if r is not None:
                        results[(method, template, name, task)] = r
    if not args.report_only:
        backbones: dict = {}
        for method in args.methods:
            for template in SWEPT_TEMPLATES.get(method, (args.template,)):
                if args.templates and template not in args.templates:
                    continue
                for config in GRID[method]:
                    if args.configs and config[0] not in args.configs:
                        continue
                    for task in TASKS:
                        if (method, template, config[0], task) in results:
                            continue
                        if template not in backbones:
                            backbones.clear()
                            backbones[template] = load_backbone(args.backbone, template=template)
                        r = results[(method, template, config[0], task)] = run_one(
                            args, backbones[template], method, template, config, task)
                        print(f"{method:8s} {template:8s} {config[0]:20s} {task:10s} dev {_pct(r['dev'])} "
                              f"test {_pct(r['test'])} step {r['best_step']} ({r.get('seconds', 0):.0f} s)", flush=True)
                        write_text(args.doc, document(args, results, cost))
    write_text(args.doc, document(args, results, cost))


if __name__ == "__main__":
    run_main(main)
