"""What the input template is worth on a causal backbone: the same tune runs in each template.

    python recipes/templates.py --out runs/templates --doc docs/templates.md

For each task and method: one ``tune`` run per template (``plain``: the input and the answer right after it;
``boundary``: a newline and ``Answer:`` between them; ``chat``: the tokenizer's chat template), the same seed,
data, steps and learning rate, on SmolLM2-135M-Instruct by default (16-shot seed-100 files, answers generated, test
capped at 100 examples). The document is written again after every finished run; the same command resumes
(finished runs are verified and reused). ``--report-only`` writes it from finished runs without training.
"""

from __future__ import annotations

import sys
from pathlib import Path

from taskspace.backbones import load_backbone
from taskspace.backbones.templates import TEMPLATES
from taskspace.store import read_json, write_json, write_text
from taskspace.tuning import TuneConfig, tune

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the recipes' shared modules
from recipe_common import now, run_main, sweep_arguments  # noqa: E402

TASKS = ["glue-sst2", "ag_news", "lama-trex"]
METHODS = ["lora", "prompt"]
ORDER = ("plain", "boundary", "chat")
assert set(ORDER) == set(TEMPLATES)


def run_one(args, backbone, task: str, method: str, template: str) -> dict:
    folder = Path(args.out) / task / method / template
    config = TuneConfig(task=task, method=method, data_dir=args.data_dir, backbone=args.backbone,
                        backbone_options={"template": template}, max_test_examples=args.max_test_examples)
    config.train = config.train.replace(steps=args.steps, batch_size=args.batch_size, eval_every=args.eval_every,
                                        progress=False)
    started = now()
    result = tune(config, folder, backbone=backbone)
    timing = folder / "timing.json"
    if not timing.is_file():
        write_json(timing, {"seconds": round(now() - started, 1)})
    return {**result.scores, **read_json(timing)}


def document(args, results: dict) -> str:
    lines = [
        "# What the input template is worth",
        "",
        f"Test scores (%) on {args.backbone}, 16-shot seed-100 files, test capped at {args.max_test_examples} "
        f"examples, answers generated; {args.steps} steps of {args.batch_size}, dev every {args.eval_every} steps, "
        "each method's default learning rate (`taskspace methods`), float32 weights. Made by "
        f"`python recipes/templates.py --out {args.out} --doc {args.doc}`. In brackets: the frozen backbone in "
        "the same template. – : not run yet.",
        "",
        "| task | method | " + " | ".join(ORDER) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in ORDER) + " |",
    ]
    minutes = 0.0
    for task in TASKS:
        for method in METHODS:
            cells = []
            for template in ORDER:
                s = results.get((task, method, template))
                if s is None:
                    cells.append("–")
                    continue
                minutes += s.get("seconds", 0.0) / 60
                frozen = (s.get("zero_shot") or {}).get("frozen", {}).get("test")
                cells.append(f"{100 * s['test']:.1f} ({100 * frozen:.1f})" if frozen is not None
                             else f"{100 * s['test']:.1f}")
            lines.append(f"| {task} | {method} | " + " | ".join(cells) + " |")
    lines += ["", f"{len(results)} runs finished, {minutes:.1f} minutes of wall time (frozen evaluations included).",
              ""]
    return "\n".join(lines)


def main() -> None:
    ap = sweep_arguments(__doc__.split("\n\n")[0], steps=60, batch_size=4, eval_every=30)
    args = ap.parse_args()
    results: dict = {}
    for template in ORDER:
        backbone = None if args.report_only else load_backbone(args.backbone, template=template)
        for task in TASKS:
            for method in METHODS:
                folder = Path(args.out) / task / method / template
                if args.report_only:
                    if (folder / "scores.json").is_file():
                        results[(task, method, template)] = {**read_json(folder / "scores.json"),
                                                             **read_json(folder / "timing.json")}
                    continue
                scores = results[(task, method, template)] = run_one(args, backbone, task, method, template)
                print(f"{task:12s} {method:7s} {template:9s} test {100 * scores['test']:.1f}", flush=True)
                write_text(args.doc, document(args, results))
    write_text(args.doc, document(args, results))


if __name__ == "__main__":
    run_main(main)
