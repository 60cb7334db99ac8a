"""The report's numbers from the recorded scores: E_rel and the gain kept over the frozen model, with their 95 %
intervals over the seeds; the relative-performance records (the report's table and its CSV), UDT's transfer cells,
and how an interval, a count of seeds and the paper's number are printed."""

from __future__ import annotations

from typing import Any

from taskspace.analysis import gain_kept, mean, mean_interval, ratio
from taskspace.analysis.stability import seed_std

from smol_settings import linear_dims, random_dims

#: The papers' headline numbers (%), printed beside ours.
PAPER = {"ipt_seen_other_d250": 97.0, "ipt_unseen_d250": 83.0, "udt_optimisation": 88.7, "udt_transfer": 84.7}

#: A task counts in "gain kept" when its reference beats the frozen model by at least this much.
GAIN_MARGIN = 0.05


def ci(centre: float | None, half: float | None, scale: float = 100.0) -> str:
    """A mean and its interval's half-width as percentages, "centre ± half" ("–" for no mean)."""
    if centre is None:
        return "–"
    return f"{scale * centre:.1f}" + ("" if half is None else f" ± {scale * half:.1f}")


def seeds_text(n: int) -> str:
    """"1 seed", "3 seeds"."""
    return f"{n} seed" if n == 1 else f"{n} seeds"


class Numbers:
    """Ratios and intervals over the recorded scores."""

    def __init__(self, results: dict, seeds: list[int]):
        self.scores: dict[str, dict[str, dict[str, float | None]]] = results.get("scores", {})
        self.frozen: dict[str, float] = results.get("frozen", {})
        self.seeds = [str(s) for s in seeds]

    def means(self, key: str, tasks: list[str]) -> dict[str, float | None]:
        """Each task's mean score over the seeds recorded under ``key``."""
        by_task = self.scores.get(key, {})
        return {t: mean(list(by_task.get(t, {}).values())) for t in tasks}

    def reference(self, method: str, tasks: list[str]) -> dict[str, float | None]:
        """Each task's reference score: the mean over seeds of ``method`` in its original space."""
        return self.means(f"reference/{method}", tasks)

    def per_seed(self, key: str, tasks: list[str], refs: dict[str, float | None], *, gain: bool = False) -> list:
        """Per seed: the mean over tasks of score / reference (``gain``: the share of the reference's gain over
        the frozen model that the score keeps, over the tasks where the reference gains >= 5 points)."""
        by_task = self.scores.get(key, {})
        values = []
        for s in self.seeds:
            got = {t: by_task.get(t, {}).get(s) for t in tasks}
            if any(v is None for v in got.values()):
                continue  # a seed that did not run on every task (a stage with fewer seeds)
            if gain:
                values.append(gain_kept(got, {t: refs[t] for t in tasks},
                                        {t: self.frozen.get(t, 0.0) for t in tasks}, GAIN_MARGIN)[1])
            else:
                values.append(mean([ratio(got[t], refs[t]) for t in tasks]))
        return values

    def relative(self, key: str, tasks: list[str], refs: dict, **kw) -> tuple[float | None, float | None, int]:
        return mean_interval(self.per_seed(key, tasks, refs, **kw))

    def absolute(self, key: str, task: str) -> tuple[float | None, float | None, int]:
        return mean_interval(list(self.scores.get(key, {}).get(task, {}).values()))

    def spread(self, key: str, tasks: list[str]) -> float | None:
        """The seeds' spread: the mean over ``tasks`` of the sample standard deviation of each task's scores over
        its seeds (a fraction, as the scores; tasks with fewer than two seeds recorded left out)."""
        by_task = self.scores.get(key, {})
        std = seed_std({t: [v for v in by_task.get(t, {}).values() if v is not None] for t in tasks})[0]
        return None if std is None else std / 100


#: The columns of the relative-performance CSV (one row per kind of run; fractions, not percentages).
RELATIVE_COLUMNS = ("what", "key", "method", "d", "e_rel", "e_rel_half", "gain_kept", "gain_kept_half", "low_e_rel",
                    "low_e_rel_half", "low_tasks", "seeds", "spread", "paper")


def relative_records(cfg: dict, results: dict) -> list[dict[str, Any]]:
    """One record per kind of unseen-task run: E_rel and gain kept with their 95 % intervals over the seeds, E_rel
    over the tasks where the frozen model scores under half the reference, the seeds' spread (:meth:`Numbers.spread`)
    and the paper's number where it gives one; then each original-space method's own (the reference against itself:
    its seeds' E_rel and spread), and the frozen backbone against each (where every subspace starts from)."""
    unseen, seeds = list(cfg["unseen_tasks"]), list(cfg["seeds"])
    num = Numbers(results, seeds)
    ipt_method = cfg.get("ipt", {}).get("method", "prompt")
    records: list[dict[str, Any]] = []

    def add(label, key, method, tasks, d=None, paper=None):
        refs = num.reference(method, tasks)
        low = [t for t in tasks if refs[t] is not None and num.frozen.get(t, 1.0) < 0.5 * refs[t]]
        rel, kept = num.relative(key, tasks, refs), num.relative(key, tasks, refs, gain=True)
        low_rel = num.relative(key, low, refs) if low else (None, None, 0)
        records.append({"what": label, "key": key, "method": method, "d": d, "e_rel": rel[0], "e_rel_half": rel[1],
                        "gain_kept": kept[0], "gain_kept_half": kept[1], "low_e_rel": low_rel[0],
                        "low_e_rel_half": low_rel[1], "low_tasks": len(low) if low else None, "seeds": rel[2],
                        "spread": num.spread(key, tasks), "paper": paper})

    for d in cfg.get("ipt", {}).get("dims", []):
        add(f"IPT, IST, unseen tasks, d = {d}", f"ipt/d{d}", ipt_method, unseen, d,
            PAPER["ipt_unseen_d250"] if d == max(cfg["ipt"]["dims"]) else None)
        if d in random_dims(cfg["ipt"]):
            add(f"random auto-encoder, unseen tasks, d = {d}", f"random-ae/d{d}", ipt_method, unseen, d)
    for d in linear_dims(cfg) if "ipt" in cfg else []:
        add(f"linear subspace (the bank's principal directions), unseen tasks, d = {d}", f"linear/d{d}", ipt_method,
            unseen, d)
    for d in cfg.get("fastfood", {}).get("dims", []):
        add(f"Fastfood (DID, all weights), d = {d}", f"fastfood/d{d}", ipt_method,
            list(cfg["fastfood"].get("tasks", unseen)), d)
    if "udt" in cfg:
        for m in cfg["udt"]["fit"]["methods"]:
            add(f"UDT subspace optimisation, {m}", f"udt/{m}", m, unseen, cfg["udt"]["fit"].get("d"),
                PAPER["udt_optimisation"])
    for m in cfg["bank"]["methods"]:
        if f"reference/{m}" in num.scores:
            add(f"{m} tuning (the reference)", f"reference/{m}", m, unseen)
    for m in cfg["bank"]["methods"]:
        refs = num.reference(m, unseen)
        records.append({**dict.fromkeys(RELATIVE_COLUMNS), "what": f"frozen backbone (vs {m})", "key": "frozen",
                        "method": m, "e_rel": mean([ratio(num.frozen.get(t), refs[t]) for t in unseen]),
                        "gain_kept": 0.0})
    return records


def category_cells(cfg: dict, results: dict, records: list[dict[str, Any]] | None = None
                   ) -> tuple[dict[str, list[str]], list[tuple[str, list[tuple]]]]:
    """E_rel per category of the unseen tasks (CrossFit's cls and non-cls): the categories' tasks, and per kind of
    unseen-task run of :func:`relative_records` (``records``, computed when not given; the frozen backbone and
    Fastfood's own task list left out) its E_rel over each category's tasks alone (centre, 95 % half-width, seeds).
    No categories for unseen tasks of one."""
    from taskspace.tasks import CATALOG

    unseen = list(cfg["unseen_tasks"])
    groups: dict[str, list[str]] = {}
    for t in unseen:
        if t in CATALOG:
            groups.setdefault(CATALOG[t].category, []).append(t)
    if len(groups) < 2:
        return {}, []
    groups = dict(sorted(groups.items()))
    num = Numbers(results, list(cfg["seeds"]))
    rows = []
    for r in relative_records(cfg, results) if records is None else records:
        if r["key"] == "frozen" or r["key"].startswith("fastfood/"):
            continue
        refs = num.reference(r["method"], unseen)
        rows.append((r["what"], [num.relative(r["key"], tasks, refs) for tasks in groups.values()]))
    return groups, rows


def transfer_cells(cfg: dict, results: dict) -> tuple[list[str], dict[str, dict[str, tuple]]]:
    """UDT's transfer matrix: the methods, and per source and target method the E_rel of the transferred vectors
    on the unseen tasks against the target in its original space (centre and 95 % half-width over the seeds)."""
    ms, unseen = list(cfg["udt"]["fit"]["methods"]), list(cfg["unseen_tasks"])
    num = Numbers(results, list(cfg["seeds"]))
    return ms, {src: {tgt: num.relative(f"transfer/{src}/{tgt}", unseen, num.reference(tgt, unseen))[:2]
                      for tgt in ms} for src in ms}


def paper_cell(record: dict) -> str:
    """The paper's number for a relative-performance row; IPT's is at d = 250, said so beside another d."""
    if record["paper"] is None:
        return "–"
    at = " (d = 250)" if record["key"].startswith("ipt/") and record["d"] != 250 else ""
    return f"{record['paper']:.1f}{at}"
