"""Does tuning matter on a backbone? The frozen model against each delta method on a fixed set of shared tasks.

    python recipes/backbones.py --out runs/backbones --doc docs/backbones.md

For each backbone (default: SmolLM2-135M-Instruct, then all-MiniLM-L6-v2 on the tasks with options) and each
task: the frozen backbone's dev and test scores once, then one ``tune`` run per method (16-shot seed-100 files,
the backbone's decode protocol: ``generate`` for SmolLM2, ``rank`` for the encoder; test capped at 100
examples). After every finished run the document is written again, so an interrupted invocation leaves a
document of everything finished so far; the same command resumes (finished runs are verified and reused).
``--report-only`` writes the document from finished runs without training. ``--reuse-budget runs/budget`` takes a
run docs/budget.md's sweep (recipes/budget.py) made with exactly these settings instead of training it again: the
sweep's record is checked against them by ``tune`` itself, the run is linked (not copied), and the document marks
its cells.

Every finished result is also kept in ``docs/backbones.json`` (beside ``--doc``), which is committed: the document
is made from it and from the run folders, so a lost run folder costs nothing. The record keeps each method's
learning rate and options (``"methods"``); when the library's change for a method, that method's results are left
out (the command says so) and its runs are made again, the other methods' kept (a run folder of the old settings
under ``--out`` is refused by ``tune``, naming it: move it aside). Its first 67 SmolLM2 runs were
recovered from the committed document when their folders were lost with a machine (its ``"recovered"`` says so).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import torch

from taskspace import __version__
from taskspace.analysis import Table
from taskspace.backbones import load_backbone
from taskspace.backbones.dtypes import cpu_model
from taskspace.deltas import METHODS as REGISTRY
from taskspace.errors import DataError
from taskspace.evaluation import capped_test_split
from taskspace.frozen import frozen_scores as cached_frozen_scores
from taskspace.store import read_json, write_json, write_text
from taskspace.tasks import CATALOG, load_task
from taskspace.train import TrainConfig
from taskspace.tuning import TuneConfig, tune, tune_training

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the recipes' shared modules
from recipe_common import now, read_record, record_path, run_main  # noqa: E402

#: Six tasks with options and six generative ones that a ~135M model can learn from 16 examples.
OPTION_TASKS = ["ag_news", "glue-sst2", "trec", "emotion", "glue-mrpc", "sciq"]
GENERATIVE_TASKS = ["tweet_qa", "ropes", "lama-trex", "lama-squad", "web_questions", "ade_corpus_v2-dosage"]
METHODS = ["prompt", "prefix", "lora", "adapter", "bitfit", "finetune"]
GAIN_THRESHOLD = 0.05  # a task counts as gained when a method's test score beats the frozen one by 5 points


def _tasks_for(backbone) -> list[str]:
    """The tasks a backbone runs, tasks with options and generative ones alternating (so that an interrupted
    invocation has finished some of each)."""
    if backbone.family == "encoder":
        return list(OPTION_TASKS)
    return [t for pair in zip(OPTION_TASKS, GENERATIVE_TASKS) for t in pair]


def training_budget(args) -> TrainConfig:
    """tune's budget (``taskspace methods``: steps, batch, dev interval, patience), with the steps, batch size and
    dev interval given on the command line; the learning rate is each method's."""
    given = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size),
                               ("eval_every", args.eval_every)) if v is not None}
    return tune_training(**given)


def frozen_scores(backbone, task, test, folder: Path, batch_size: int) -> dict:
    """The frozen backbone's dev and test scores (computed once, kept in ``folder/frozen.json``)."""
    path = folder / "frozen.json"
    if path.is_file():
        return read_json(path)
    started = now()
    scores = cached_frozen_scores(backbone, {"dev": task.dev, "test": test}, task.metric, batch_size=batch_size)
    scores["seconds"] = round(now() - started, 1)
    write_json(path, scores)
    return scores


def collect(out: Path, record: dict | None = None) -> dict:
    """Every finished result: the committed record's, overlaid by those under ``out`` (a run folder is the
    truth where both have a run; one made with another learning rate or other options than the record's for its
    method is left out): {backbone: {task: {"frozen": {...}, method: scores}}}."""
    results: dict = copy.deepcopy(record["results"]) if record else {}
    methods = record["methods"] if record else method_settings()
    for frozen in sorted(out.glob("*/*/frozen.json")):
        task_dir = frozen.parent
        entry = {"frozen": read_json(frozen)}
        for method in METHODS:
            scores = task_dir / method / "scores.json"
            if scores.is_file() and made_with(task_dir / method, methods[method]):
                timing = task_dir / method / "timing.json"
                entry[method] = {**read_json(scores), **(read_json(timing) if timing.is_file() else {}),
                                 "reused": (task_dir / method).is_symlink()}
                entry[method].setdefault("wall_seconds", entry[method].pop("seconds", 0.0))  # the sweep's name
        results.setdefault(task_dir.parent.name, {}).setdefault(task_dir.name, {}).update(entry)
    return results


def method_settings() -> dict:
    """What a method's results are made with: its learning rate and its options (the library's defaults, every one
    of them, as a run's config.json records them), as JSON reads them back."""
    return json.loads(json.dumps({m: {"lr": REGISTRY[m].default_lr, "options": REGISTRY[m].config_class().to_dict()}
                                  for m in METHODS}))


def made_with(run_dir: Path, settings: dict) -> bool:
    """Whether the run in ``run_dir`` was made with ``settings`` (a method's learning rate and options)."""
    config = read_json(run_dir / "config.json")
    return config["run"]["train"]["lr"] == settings["lr"] and config["method"]["config"] == settings["options"]


def current_methods(record: dict, methods: dict) -> dict:
    """The record less the results of each method whose learning rate or options were others than ``methods``'
    (each named on stdout: it runs again), now under ``methods``."""
    stale = [m for m in methods if record.get("methods", {}).get(m, methods[m]) != methods[m]]
    for m in stale:
        print(f"{m}: the record's results were made with {record['methods'][m]}, not {methods[m]}: left out, to run "
              "again", flush=True)
    results = {bb: {task: {k: v for k, v in entry.items() if k not in stale} for task, entry in tasks.items()}
               for bb, tasks in record["results"].items()}
    return {**record, "methods": methods, "results": results}


def write_outputs(args, out: Path, record: dict, meta: dict) -> None:
    """The record (every result finished so far) and the document made from it."""
    record = {**record, "results": collect(out, record)}
    write_json(record_path(args.doc), record)
    write_text(args.doc, render(record["results"], meta, recovered=record.get("recovered")))


def budget_twin(config: TuneConfig, backbone, budget: Path) -> tuple[TuneConfig, Path] | None:
    """The run of docs/budget.md's sweep (under ``budget``) with ``config``'s settings, and the config the sweep
    recorded for it: the same but for the backbone's template, named there rather than defaulted (the backbone
    resolves both alike: ``tune`` checks its record), and the zero-shot state also scored (an evaluation before
    training, which changes neither the training nor the scores). None where the sweep has no such run: a
    learning rate or options it did not try, or a patience it did not train with (prompt tuning and LoRA ran
    without early stopping)."""
    from budget import GRID, patience_of, run_folder

    if config.method not in GRID or patience_of(config.method) != config.train.patience:
        return None
    name = next((n for n, lr, options in GRID[config.method]
                 if lr == config.train.lr and options == config.method_options), None)
    folder = None if name is None else run_folder(budget, config.method, backbone.template, name, config.task)
    if folder is None or not (folder / "scores.json").is_file():
        return None
    return dataclasses.replace(config, backbone_options={"template": backbone.template}, zero_shot=True), folder


def _pct(x):
    return None if x is None else 100 * x


BEFORE = Path(__file__).with_name("backbones_before.json")
REUSED = " †"  # marks a cell whose run is the budget sweep's


def _cell(now: float | None, before: float | None) -> str | None:
    """A test score (%) with the earlier one in brackets."""
    if now is None:
        return None if before is None else f"– ({before:.1f})"
    return f"{now:.1f}" + ("" if before is None else f" ({before:.1f})")


def render(results: dict, meta: dict, before: dict | None = None, recovered: dict | None = None) -> str:
    """The document. ``recovered``: {backbone: {"source", "runs", "minutes"}}, for results taken from an earlier
    document when their run folders were lost (marked ``"recovered"`` in ``results``)."""
    before = before if before is not None else read_json(BEFORE)
    parts = [
        "# Backbones: does tuning matter?",
        "",
        "Test scores (%) of the frozen backbone and of each delta method tuned on the task, 16-shot seed-100 files, "
        f"test capped at 100 examples. Made by `{meta['command']}` (taskspace {__version__}; {meta['machine']}). "
        "Each method runs with its default options, learning rate and training budget (`taskspace methods`; "
        "docs/budget.md says how they were chosen) and the settings below; the best step on the 16-example dev "
        "set is kept, the untrained state (step 0) included. In brackets: the same cell before the defaults "
        f"changed ({before['source']}).",
        "",
        f"Settings: {meta['settings']}.",
        "",
    ]
    for backbone, tasks in results.items():
        earlier = before["scores"].get(backbone, {})
        header = ["task", "metric", "decode", "frozen", *METHODS]
        rows, gains, means, old_means = [], {m: [] for m in METHODS}, {m: [] for m in METHODS}, {m: [] for m in METHODS}
        seconds = 0.0
        for task, entry in tasks.items():
            frozen = entry["frozen"]["test"]
            old = earlier.get(task, {})
            seconds += entry["frozen"].get("seconds", 0.0)  # none where recovered
            decode = next((entry[m].get("decode") for m in METHODS if m in entry), "")
            row = [task, CATALOG[task].metric if task in CATALOG else "", decode, _cell(_pct(frozen), old.get("frozen"))]
            for m in METHODS:
                s = entry.get(m)
                cell = _cell(None if s is None else _pct(s["test"]), old.get(m))
                row.append(cell + REUSED if s is not None and s.get("reused") else cell)
                if s is not None:
                    gains[m].append(s["test"] - frozen)
                    means[m].append(100 * s["test"])
                    if old.get(m) is not None:
                        old_means[m].append(old[m])
                    seconds += s.get("wall_seconds", 0.0)  # none where recovered
            rows.append(row)
        rows.append(["mean test score (before, over the same tasks)", "", "", None,
                     *[_cell(sum(v) / len(v), sum(old_means[m]) / len(old_means[m]) if old_means[m] else None)
                       if v else None for m, v in means.items()]])
        rows.append(["mean gain over frozen", "", "", None,
                      *[_pct(sum(g) / len(g)) if g else None for g in gains.values()]])
        rows.append([f"tasks gaining >= {100 * GAIN_THRESHOLD:.0f} points", "", "", None,
                     *[f"{sum(x >= GAIN_THRESHOLD for x in g)} of {len(g)}" if g else None for g in gains.values()]])
        rows.append(["tasks below the frozen model", "", "", None,
                     *[f"{sum(x < 0 for x in g)} of {len(g)}" if g else None for g in gains.values()]])
        done = sum(len(g) for g in gains.values())
        reused = sum(bool(entry[m].get("reused")) for entry in tasks.values() for m in METHODS if m in entry)
        lost = sum(bool(entry[m].get("recovered")) for entry in tasks.values() for m in METHODS if m in entry)
        threads = sorted({entry[m]["threads"] for entry in tasks.values() for m in METHODS
                          if m in entry and "threads" in entry[m]})
        note = (f"{done} runs finished; "
                + (f"{done - lost} made from their run folders, their wall time (frozen evaluations included): "
                   if lost else "their wall time (frozen evaluations included): ")
                + f"{seconds / 60:.1f} min"
                + (f" at {' or '.join(map(str, threads))} threads per run" if threads else "")
                + ". – : not run yet."
                + (f" {REUSED} ({reused} runs): the run of docs/budget.md's sweep with these same settings "
                   "(`--reuse-budget`), its wall time as the sweep measured it." if reused else ""))
        if lost:
            lost_from = (recovered or {}).get(backbone, {})
            note += (f" {lost} runs were made with these settings in earlier sessions and their run folders lost "
                     f"with the machine; their scores are taken from {lost_from.get('source', 'an earlier document')}"
                     " at its precision (0.1 point)"
                     + (f", and their wall time then was {lost_from['minutes']:.1f} min for {lost_from['runs']} runs "
                        "and their tasks' frozen evaluations" if "minutes" in lost_from else "") + ".")
        parts.append(Table(backbone, header, rows, note).markdown())
    return "\n".join(parts)


def run_config(args, budget: TrainConfig, name: str, task: str, method: str) -> TuneConfig:
    """One run's settings: the method's defaults and learning rate, tune's budget, no zero-shot evaluation (the
    frozen model's scores are the recipe's own)."""
    return TuneConfig(task=task, method=method, data_dir=args.data_dir, backbone=name,
                      train=budget.replace(lr=REGISTRY[method].default_lr, progress=False),
                      eval_batch_size=args.eval_batch_size, max_test_examples=args.max_test_examples, zero_shot=False)


def run_one(args, budget: TrainConfig, backbone, name: str, task: str, method: str, run_dir: Path) -> bool:
    """Train (or resume) one run into ``run_dir``, or, with ``--reuse-budget``, link the budget sweep's run of the
    same settings there; a finished one is verified and left. True when this call finished or linked it."""
    config = run_config(args, budget, name, task, method)
    twin = budget_twin(config, backbone, Path(args.reuse_budget)) if args.reuse_budget else None
    if run_dir.is_symlink():
        if twin is None:
            raise SystemExit(f"{run_dir} is a link to a budget sweep's run: give --reuse-budget, or remove the link "
                             "to train the run here")
        tune(twin[0], run_dir, backbone=backbone)  # verified
        return False
    if twin is not None and not run_dir.exists():
        tune(*twin, backbone=backbone)  # the sweep's record checked against these settings, its theta read
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        run_dir.symlink_to(twin[1].resolve(), target_is_directory=True)
        print(f"{backbone.name} {task} {method}: the budget sweep's run {twin[1]}", flush=True)
        return True
    finished = (run_dir / "scores.json").is_file()
    started = now()
    result = tune(config, run_dir, backbone=backbone)  # a finished run is verified and returned
    if finished:
        return False
    wall = round(now() - started, 1)  # of this invocation: a resumed run counts its rest
    write_json(run_dir / "timing.json", {"wall_seconds": wall, "threads": torch.get_num_threads()})
    shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)  # a finished run needs no resume state
    print(f"{backbone.name} {task} {method}: test {result.scores['test']:.3f} ({wall:.0f} s)", flush=True)
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/backbones")
    ap.add_argument("--doc", default="docs/backbones.md")
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/crossfit"))
    ap.add_argument("--backbones", nargs="+", default=["smollm2", "minilm"])
    ap.add_argument("--tasks", nargs="*", help="only these tasks (default: the twelve above)")
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--steps", type=int, help="training steps (default: the library's, `taskspace methods`)")
    ap.add_argument("--batch-size", type=int, help="examples per step (default: the library's)")
    ap.add_argument("--eval-every", type=int, help="dev evaluation every N steps (default: the library's)")
    ap.add_argument("--max-test-examples", type=int, default=100)
    ap.add_argument("--eval-batch-size", type=int, default=32)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--reuse-budget", metavar="DIR", help="take the runs recipes/budget.py made under DIR with "
                    "these same settings instead of training them again")
    args = ap.parse_args()

    out = Path(args.out)
    budget = training_budget(args)
    trained = (f"{budget.steps} steps, batch {budget.batch_size}, dev every {budget.eval_every} steps, patience "
               f"{budget.patience}, {budget.optimizer} with {budget.schedule} decay, clip {budget.max_grad_norm}")
    settings = f"{trained}, float32 weights"  # the record's; each method's rate and options are under "methods"
    methods = method_settings()
    rates = json.dumps({m: s["lr"] for m, s in methods.items()})
    meta = {"command": "python recipes/backbones.py --out runs/backbones --doc docs/backbones.md"
                       + (f" --reuse-budget {args.reuse_budget}" if args.reuse_budget else ""),
            "machine": cpu_model(),
            "settings": f"{trained}, learning rates {rates}, float32 weights"}
    record = current_methods(read_record(record_path(args.doc), settings), methods)
    if not args.report_only:
        for name in args.backbones:
            backbone = load_backbone(name)
            for task_name in args.tasks or _tasks_for(backbone):
                if backbone.family == "encoder" and task_name not in OPTION_TASKS:
                    continue
                task = load_task(task_name, args.data_dir)
                test = capped_test_split(task, args.max_test_examples, 0)
                folder = out / backbone.name / task_name
                frozen_scores(backbone, task, test, folder, args.eval_batch_size)
                for method in args.methods:
                    if run_one(args, budget, backbone, name, task_name, method, folder / method):
                        write_outputs(args, out, record, meta)
    try:
        write_outputs(args, out, record, meta)
    except DataError as e:
        raise SystemExit(str(e))


if __name__ == "__main__":
    run_main(main)
