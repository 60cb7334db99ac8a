"""The report's main sections of one recipe (or part): the setting, the unseen tasks' scores, the relative
performance, IPT's learnt against random (and linear) subspace and its challenges, the unseen tasks IST fails on
(``failures``), UDT's transfer, and the stage times."""

from __future__ import annotations

import os
import platform

import torch

from taskspace import __version__
from taskspace.analysis import mean, mean_interval, ratio
from taskspace.tasks import CATALOG

from recipe_common import fmt
from smol_settings import linear_dims, random_dims

from .failures import failure_lines
from .relative import GAIN_MARGIN, PAPER, Numbers, category_cells, ci, paper_cell, relative_records, transfer_cells

#: Score keys of the analyses (reported in their own sections, not among the unseen tasks' main columns).
ANALYSIS_KEYS = ("multitask/", "fraction/", "excluded/", "from-ist/", "stability/", "sweep/", "scale/")


def held_out_mark(task: str, results: dict) -> str:
    """The task's name in a table, marked † where its test split is its held-out pool (the recipe's pool_test)."""
    return task + (" †" if task in results.get("setting", {}).get("pool_tested", []) else "")


def held_out_note(cfg: dict, results: dict) -> list[str]:
    """The note under a table whose tasks :func:`held_out_mark` marks (none where no task is)."""
    if not results.get("setting", {}).get("pool_tested"):
        return []
    return [f"† No test file in the data: scored on its held-out pool (every run of the task alike), the train and "
            f"dev examples of the task's other seeds' few-shot files that are not in its own, at most "
            f"{cfg['max_test_examples']} of them (drawn from the dataset's training set, not its test set).", ""]


def _versus(num: Numbers, tasks: list[str], refs: dict, title: str, other: str,
            pairs: list[tuple[int, str, int, str]]) -> list[str]:
    """IPT against another subspace on the unseen tasks, one row per (IPT d, its key, the other's d, its key): each
    one's E_rel, their difference paired by seed, each one's gain kept; one d column where every pair shares it."""
    same = all(x == d for x, _, d, _ in pairs)
    lines = [f"## {title} (unseen tasks)", "",
             ("| d |" if same else f"| IPT d | {other} d |")
             + f" IPT E_rel % | {other} E_rel % | difference (paired by seed) | gain kept: IPT | {other} |",
             "|" + " ---: |" * (6 if same else 7)]
    for x, ipt_key, d, key in pairs:
        a, b = num.per_seed(ipt_key, tasks, refs), num.per_seed(key, tasks, refs)
        diff = [p - q for p, q in zip(a, b) if p is not None and q is not None]
        cells = [f"{d}" if same else f"{x} | {d}", *(ci(*mean_interval(v)[:2]) for v in (a, b, diff)),
                 *(ci(*num.relative(k, tasks, refs, gain=True)[:2]) for k in (ipt_key, key))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def report_lines(cfg: dict, args, results: dict, stages: dict[str, float], title: str) -> list[str]:
    """The main sections of one recipe (or part), headed ``title``, from its results and stage times."""
    unseen, train_tasks = list(cfg["unseen_tasks"]), list(cfg["train_tasks"])
    seeds = list(cfg["seeds"])
    num = Numbers(results, seeds)
    setting = results.get("setting", {})
    methods = list(cfg["bank"]["methods"])
    lines = [f"{title}: {setting.get('backbone', cfg.get('backbone'))}", ""]
    total = sum(stages.values())
    describe = setting.get("describe", {})
    machine = (f"{setting.get('backbone')} (weights sha256 {str(setting.get('fingerprint'))[:16]}..., "
               f"{describe.get('dtype')}, decode={describe.get('decode')}), {setting.get('threads')} CPU threads"
               if setting else "the backbone not recorded yet (no stage has finished)")
    lines += [
        f"taskspace {__version__}, {machine}, Python {platform.python_version()}, torch {torch.__version__}. Wall "
        f"time of all stages: **{total / 60:.1f} minutes** (summed over the invocations that ran them).", "",
        f"Setting: {len(train_tasks)} training tasks and {len(unseen)} unseen tasks from "
        f"{os.path.relpath(args.data_dir)} (16-shot files of seed {cfg['data_seed']}; lists in {args.config}); test "
        f"scores on a fixed random subset of at most {cfg['max_test_examples']} test examples per task. Seeds "
        f"{seeds} for every unseen-task run; each mean is given with its 95 % interval over the seeds (Student's t). "
        "E_rel: the mean over tasks of score / reference, the reference being the same task tuned in the original "
        "space (mean over its seeds). Gain kept: the share of the reference's gain over the frozen model that a "
        f"score keeps, over the tasks where that gain is at least {100 * GAIN_MARGIN:.0f} points (0 = no better than "
        "the frozen model).", ""]
    sizes = setting.get("sizes", {})
    lines += ["Original-space tuning: " + "; ".join(f"{m} {cfg['bank']['methods'][m]}"
                                                    + (f" (D = {sizes[m]:,})" if m in sizes else "") for m in methods)
              + f", {cfg['bank']['train']}.", ""]

    # absolute scores of the unseen tasks -----------------------------------------------------------------------
    keys = [k for k in num.scores if not k.startswith(("bank/", "transfer/") + ANALYSIS_KEYS) and "/same" not in k
            and "/other" not in k]
    header = ["task", "category", "frozen"] + keys
    lines += ["## Unseen tasks: test scores (%)", "", "| " + " | ".join(header) + " |",
              "| " + " | ".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + " |"]
    for t in unseen:
        row = [held_out_mark(t, results), CATALOG[t].category if t in CATALOG else "–", fmt(num.frozen.get(t))]
        row += [ci(*num.absolute(k, t)[:2]) for k in keys]
        lines.append("| " + " | ".join(row) + " |")
    lines += [""] + held_out_note(cfg, results)

    ipt_method = cfg.get("ipt", {}).get("method", "prompt")

    # relative performance --------------------------------------------------------------------------------------
    records = relative_records(cfg, results)
    rows = [[r["what"], ci(r["e_rel"], r["e_rel_half"]), ci(r["gain_kept"], r["gain_kept_half"]),
             "–" if r["low_tasks"] is None else ci(r["low_e_rel"], r["low_e_rel_half"]) + f" ({r['low_tasks']})",
             "–" if r["seeds"] is None else str(r["seeds"]), ci(r["spread"], None), paper_cell(r)]
            for r in records]
    lines += ["## Relative performance on the unseen tasks", "",
              "| what | E_rel % | gain kept % | E_rel % where frozen < half the reference (tasks) | seeds | seeds' "
              "spread (points) | paper |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "Seeds' spread: the mean over the unseen tasks of the standard deviation of a task's test score "
              "over its seeds (the paper's Table II measure of stability); a reference's row compares its seeds with "
              "their own mean.", ""]
    groups, by_category = category_cells(cfg, results, records)
    if groups:
        heads = [f"{c} ({len(ts)} task{'' if len(ts) == 1 else 's'})" for c, ts in groups.items()]
        lines += ["## E_rel by category (unseen tasks)", "", "| what | " + " | ".join(heads) + " |",
                  "| --- |" + " ---: |" * len(groups)]
        lines += [f"| {what} | " + " | ".join(ci(*cell[:2]) for cell in cells) + " |" for what, cells in by_category]
        lines += ["", "E_rel over one category's unseen tasks alone (CrossFit's ontology), per seed, then the mean "
                  "over the seeds with its 95 % interval.", ""]

    # the headline: learnt vs random ------------------------------------------------------------------------------
    if "ipt" in cfg and random_dims(cfg["ipt"]):
        lines += _versus(num, unseen, num.reference(ipt_method, unseen), "Learnt vs random subspace", "random",
                         [(d, f"ipt/d{d}", d, f"random-ae/d{d}") for d in random_dims(cfg["ipt"])])
    if "ipt" in cfg and linear_dims(cfg):
        # each linear d beside the IPT d nearest to it (a bank of n tasks gives at most n - 1 linear directions)
        pairs = [(min(cfg["ipt"]["dims"], key=lambda x: (abs(x - d), x)), d) for d in linear_dims(cfg)]
        lines += _versus(num, unseen, num.reference(ipt_method, unseen),
                         "Learnt (MSF's auto-encoder) vs linear subspace (the bank's principal directions)", "linear",
                         [(x, f"ipt/d{x}", d, f"linear/d{d}") for x, d in pairs])
    if "ipt" in cfg and random_dims(cfg["ipt"]):
        n = cfg["ipt"].get("challenge_tasks", 0)
        if n:
            d = max(cfg["ipt"]["dims"])
            seen = train_tasks[:n]
            bank_refs = num.means(f"bank/{ipt_method}", seen)
            lines += [f"## IST on {n} training tasks, d = {d} (first seed; reference: their bank entries)", "",
                      "| data | E_rel % | tasks | paper |", "| --- | ---: | ---: | ---: |"]
            for label, paper in (("same", None), ("other", PAPER["ipt_seen_other_d250"])):
                got = num.means(f"ipt/d{d}/{label}", seen)
                ratios = [r for r in (ratio(got[t], bank_refs[t]) for t in seen) if r is not None]
                lines.append(f"| {label} | {fmt(mean(ratios))} | {len(ratios)} | {'–' if paper is None else paper} |")
            lines += ["", "Tasks: those with a test score whose bank entry scores above 0 (a task without a test file "
                      "has none).", ""]

    # the unseen tasks IST fails on, and the training tasks nearest them by answer form -----------------------------
    lines += failure_lines(cfg, results, args.data_dir)

    # transfer ----------------------------------------------------------------------------------------------------
    if "udt" in cfg:
        ms, cells = transfer_cells(cfg, results)
        lines += ["## UDT transfer (E_rel % against the target method in its original space, unseen tasks)", "",
                  "| source \\ target | " + " | ".join(ms) + " |", "| --- |" + " ---: |" * len(ms)]
        lines += [f"| {src} | " + " | ".join(ci(*cells[src][tgt]) for tgt in ms) + " |" for src in ms]
        off = [cells[a][b][0] for a in ms for b in ms if a != b and cells[a][b][0] is not None]
        lines += ["", f"Mean of the off-diagonal cells: {fmt(mean(off))} % (paper: {PAPER['udt_transfer']} %). "
                  "Each z is decoded by the target's up-projection at the evaluation step whose transferred result "
                  "is best on dev (the paper's selection).", ""]

    lines += ["## Stage times", "", "| stage | minutes |", "| --- | ---: |"]
    lines += [f"| {name} | {sec / 60:.1f} |" for name, sec in stages.items()]
    return lines + [""]
