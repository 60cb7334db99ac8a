"""The report's failure analysis (issue 28): the unseen tasks on which IST at the largest d fails, each with its
answer form and the training tasks nearest it by answer form (``answer_form``), those with their own score in the
bank; from the run's results.json and the task files under the data folder."""

from __future__ import annotations

from pathlib import Path

from taskspace.tasks import CATALOG

from recipe_common import fmt

from .answer_form import SENTENCE_WORDS, jaccard, load_answer_form, nearest
from .relative import Numbers


def failing_tasks(cfg: dict, results: dict) -> list[str]:
    """The unseen tasks whose IST score at the largest d (mean over its seeds) keeps less than half of the IPT
    method's original-space score (the reference, mean over its seeds), or is at or below the frozen model's; in the
    recipe's order. Tasks without both means are left out."""
    if "ipt" not in cfg:
        return []
    num = Numbers(results, list(cfg["seeds"]))
    unseen = list(cfg["unseen_tasks"])
    ist = num.means(f"ipt/d{max(cfg['ipt']['dims'])}", unseen)
    refs = num.reference(cfg["ipt"].get("method", "prompt"), unseen)
    return [t for t in unseen if ist[t] is not None and refs[t] is not None
            and (ist[t] < 0.5 * refs[t] or (t in num.frozen and ist[t] <= num.frozen[t]))]


def _cell(text: str) -> str:
    """``text`` safe in a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def failure_lines(cfg: dict, results: dict, data_dir: str | Path, k: int = 3) -> list[str]:
    """The section: one row per failing unseen task (:func:`failing_tasks`) with its scores, its answer form and
    its ``k`` nearest training tasks by answer form, each with the Jaccard overlap of their answer words and its
    bank score; nothing (and no task file read) when no unseen task fails."""
    failing = failing_tasks(cfg, results)
    if not failing:
        return []
    num = Numbers(results, list(cfg["seeds"]))
    method, d = cfg["ipt"].get("method", "prompt"), max(cfg["ipt"]["dims"])
    ist, refs = num.means(f"ipt/d{d}", failing), num.reference(method, failing)
    bank = num.means(f"bank/{method}", list(cfg["train_tasks"]))
    seed = cfg["data_seed"]
    training = [load_answer_form(t, data_dir, seed) for t in cfg["train_tasks"]]
    lines = [f"## IST's failures on unseen tasks, by answer form (d = {d})", "",
             f"{len(failing)} of the {len(cfg['unseen_tasks'])} unseen tasks: IST at d = {d} keeps less than half of "
             f"{method} tuning's score there, or scores at or below the frozen model (means over the seeds). Each "
             f"task's answer form is read from its training examples (data seed {seed}): options the same for every "
             "example (labels) or per example (choices), or free text: numbers (at least half the answers), "
             f"sentences (a median answer of {SENTENCE_WORDS} words or more) or entities. Its nearest training tasks "
             "by answer form: the same kind first, then the most shared answer words (J: Jaccard over the "
             "lower-cased words of the answers, of the labels for a label set), then the nearest median answer "
             "length, then the nearest number of options (recipes/smol_report/answer_form.py); each with its own "
             f"{method}-tuning score in the bank (test %).",
             "",
             f"| task | category | IST % | {method} tuning % | frozen % | answer form | nearest training tasks (kind, "
             "J, bank %) |",
             "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for t in failing:
        form = load_answer_form(t, data_dir, seed)
        near = "; ".join(f"{c.task} ({c.kind}, J {jaccard(form.vocabulary, c.vocabulary):.2f}, {fmt(bank[c.task])})"
                         for c in nearest(form, training, k))
        row = [t, CATALOG[t].category if t in CATALOG else "–", fmt(ist[t]), fmt(refs[t]), fmt(num.frozen.get(t)),
               form.describe(), near]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return lines + [""]
