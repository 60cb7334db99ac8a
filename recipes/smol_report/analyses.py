"""The report's sections on IPT's analyses (issue 12) and UDT's landscape, each from what the stages recorded, with the
tables and figures they wrote copied next to the report."""

from __future__ import annotations

from pathlib import Path

from taskspace.analysis import mean
from taskspace.analysis.plots import interval_lines

from recipe_common import fmt
from smol_settings import analyses_settings, random_dims

from .relative import Numbers, ci, seeds_text


def _table_lines(header: list[str], rows: list[list], digits: int = 1) -> list[str]:
    def cell(v) -> str:
        return "–" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))

    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)] + [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in rows] + [""]


def analyses_lines(cfg: dict, results: dict, out: Path, stem: Path, *, png: bool = True) -> tuple[list[str],
                                                                                                list[Path]]:
    """The report's section on IPT's analyses, and the files it copies next to the report (their CSVs and
    figures, ``<stem>-<analysis>.<ext>``)."""
    a, done = analyses_settings(cfg), results.get("analyses", {})
    d, seeds, unseen = a["d"], list(cfg["seeds"]), list(cfg["unseen_tasks"])
    method = cfg["ipt"].get("method", "prompt")
    num = Numbers(results, seeds)
    lines = [f"## IPT's analyses at d = {d} (issue 12)", ""]
    files: list[Path] = []

    def copy(source: Path, name: str) -> None:
        files.extend(copy_beside(source, stem, name, png=png))

    sweep = a.get("d_sweep")
    if sweep and any(f"sweep/d{x}" in num.scores for x in sweep["dims"]):
        lines += _sweep_lines(cfg, sweep, num, Numbers(results, seeds[:1]), method, stem, files, png=png)
    if "pca" in done:
        ev = done["pca"]["explained_variance"]
        lines += [f"**PCA of the intrinsic vectors (Fig. 8)**: {done['pca']['points']} vectors (the training tasks' "
                  f"MSF codes and the unseen tasks' IST solutions, every seed); explained variance PC1 "
                  f"{100 * ev[0]:.1f} %, PC2 {100 * ev[1]:.1f} %.", ""]
        copy(out / "analyses" / "pca" / "pca.csv", "pca.csv")
        copy(out / "analyses" / "pca" / "pca.png", "pca.png")
    if "stability" in done:
        st = done["stability"]
        lines += [f"**Stability over seeds (Table III)** on {', '.join(st['tasks'])} ({seeds_text(len(seeds))}; "
                  "mean over tasks of the std of the test scores, in points; paper, unseen tasks: fine-tuning 2.40, "
                  "prompt tuning 4.19, IPT 0.73, prompt tuning from IST 1.65):", ""]
        spread = st["header"].index("tasks")  # tasks with two runs or more of a kind
        if any(row[spread] for row in st["summary"]):
            lines += _table_lines(st["header"], st["summary"], digits=2)
        else:
            lines += ["One run per task and kind here: no spread to measure (the fine-tuning runs serve as the "
                      "reference of E_rel against fine-tuning below).", ""]
        refs = num.reference(method, st["tasks"])
        rel = num.relative(f"from-ist/{method}", st["tasks"], refs)
        if rel[0] is not None:
            lines += [f"Prompt tuning initialised from the IST solutions: E_rel {ci(*rel[:2])} % of prompt tuning "
                      f"from its own initialisation (paper: 103.4 %).", ""]
        copy(out / "analyses" / "stability.csv", "stability.csv")
    finetuned = num.scores.get("stability/finetune", {})
    if finetuned:
        tasks = sorted(finetuned)
        refs = num.means("stability/finetune", tasks)
        rows = [[f"{method} tuning", *num.relative(f"reference/{method}", tasks, refs)[:2]]]
        for x in cfg["ipt"]["dims"]:
            rows.append([f"IPT, d = {x}", *num.relative(f"ipt/d{x}", tasks, refs)[:2]])
            if x in random_dims(cfg["ipt"]):
                rows.append([f"random auto-encoder, d = {x}", *num.relative(f"random-ae/d{x}", tasks, refs)[:2]])
        lines += [f"**Against fine-tuning (Fig. 3b, 9)**: E_rel % to fine-tuning (the stability runs: "
                  f"{', '.join(tasks)}, {seeds_text(len(seeds))}; mean over seeds of the mean over tasks, 95 % "
                  "interval):",
                  ""]
        lines += _table_lines(["run", "E_rel % to fine-tuning"], [[r[0], ci(r[1], r[2])] for r in rows])
    multi = num.scores.get(f"multitask/{method}", {})
    if multi:
        first = str(seeds[0])
        rows = [[t, 100 * v[first] if v.get(first) is not None else None,
                 100 * num.scores[f"bank/{method}"][t][first]] for t, v in multi.items()]
        rows.append(["mean", mean([r[1] for r in rows]), mean([r[2] for r in rows])])
        lines += [f"**Multi-task {method} tuning (Table IV)**: one {method} on the pooled training tasks against "
                  f"each task's own (the bank), test % (paper, training tasks: 33.4 all vs 32.6 individual):", ""]
        lines += _table_lines(["training task", "all tasks", "individual"], rows)
    fractions = done.get("task_fractions", {})
    if fractions:
        refs = num.reference(method, unseen)
        full = num.per_seed(f"ipt/d{d}", unseen, refs)[:1]  # the subspace of every training task, first seed
        rows = [[100 * float(f), len(tasks), num.relative(f"fraction/{float(f):g}/d{d}", unseen, refs)[0]]
                for f, tasks in fractions.items()] + [[100.0, len(cfg["train_tasks"]), full[0] if full else None]]
        lines += [f"**Number of training tasks (Fig. 7)**: MSF at d = {d} on seeded subsets of the training tasks, IST "
                  f"on the unseen tasks (first seed), E_rel % to {method} tuning:", ""]
        lines += _table_lines(["training tasks %", "tasks", "E_rel %"],
                              [[f"{p:g}", n, None if v is None else 100 * v] for p, n, v in rows])
        if png and all(v is not None for *_, v in rows):
            files.append(interval_lines(f"IST at d = {d} on {len(unseen)} unseen tasks (first seed)",
                                        {"IPT": [(p, 100 * v, None) for p, _, v in rows]},
                                        stem.parent / f"{stem.name}-task-fraction.png",
                                        xlabel="training tasks of the subspace (%)", ylabel=f"E_rel to {method} (%)",
                                        log_x=False))
    if "task_types" in done:
        tt = done["task_types"]
        lines += [f"**Task types, included in / excluded from MSF (Fig. 4)**: IST at d = {d} on the unseen tasks of "
                  "each type, through the subspace of all training tasks and through one fitted without that type:",
                  ""]
        lines += _table_lines(tt["header"], tt["summary"])
        copy(out / "analyses" / "task-types" / "task_types.csv", "task-types.csv")
        copy(out / "analyses" / "task-types" / "task_types.png", "task-types.png")
    scale = a.get("data_scale")
    if scale and any(f"scale/k{k}/ipt" in num.scores for k in scale["k"]):
        tasks, first = list(scale["tasks"]), Numbers(results, seeds[:1])

        def scale_row(label, ref_key: str, ist_key: str) -> list:  # first seed only
            refs = first.means(ref_key, tasks)
            return [label, _mean_pct(list(refs.values())), _mean_pct(list(first.means(ist_key, tasks).values())),
                    first.relative(ist_key, tasks, refs)[0]]

        rows = [scale_row(k, f"scale/k{k}/{method}", f"scale/k{k}/ipt") for k in scale["k"]]
        # the main stages on the files' own 16-shot split, when their MSF saw the same tasks
        files_row = ([scale_row(f"16, the files of data seed {cfg['data_seed']}", f"reference/{method}", f"ipt/d{d}")]
                     if list(scale["train_tasks"]) == list(cfg["train_tasks"]) and f"ipt/d{d}" in num.scores else [])
        lines += [f"**Data scale (Fig. 6)**: every task's train and dev resampled at K per label (K in all for tasks "
                  f"without fixed labels) from the pooled files of the five seeds; {method} tuning and MSF at d = {d} "
                  f"on {len(scale['train_tasks'])} training tasks ({', '.join(scale['train_tasks'])}), IST on "
                  f"{', '.join(tasks)} (first seed); test % (mean over tasks) and E_rel % to {method} tuning at the "
                  "same K:", ""]
        lines += _table_lines(["K", f"{method} tuning", "IST", "E_rel %"],
                              [[k, p, i, None if v is None else 100 * v] for k, p, i, v in files_row + rows])
        if png and all(r[1] is not None and r[2] is not None for r in rows):
            files.append(interval_lines(f"{len(tasks)} unseen tasks (first seed), MSF on "
                                        f"{len(scale['train_tasks'])} training tasks at the same K",
                                        {f"{method} tuning": [(k, p, None) for k, p, *_ in rows],
                                         f"IST, d = {d}": [(k, i, None) for k, _, i, _ in rows]},
                                        stem.parent / f"{stem.name}-data-scale.png",
                                        xlabel="K (examples per label)", ylabel="test score (%)"))
    return lines, files


def _sweep_lines(cfg: dict, sweep: dict, num: Numbers, first: Numbers, method: str, stem: Path, files: list[Path],
                 *, png: bool) -> list[str]:
    """IPT's Fig. 3 from the d sweep and the headline's runs: per d, E_rel of IST on the sweep's unseen tasks to
    ``method`` tuning and (with the stability stage's fine-tuning runs of the same tasks) to fine-tuning, and on
    the challenge tasks with the same and with other data to their bank entries; first seed throughout."""
    tasks, seen = list(sweep["tasks"]), list(cfg["train_tasks"])[: sweep.get("challenge_tasks", 0)]
    keys = sorted([(x, f"sweep/d{x}") for x in sweep["dims"]] + [(x, f"ipt/d{x}") for x in cfg["ipt"]["dims"]])
    finetuned = num.scores.get("stability/finetune", {})
    refs = {f"{method} tuning": num.reference(method, tasks)}
    if all(t in finetuned for t in tasks):
        refs["fine-tuning"] = num.means("stability/finetune", tasks)
    bank = num.means(f"bank/{method}", seen)
    series: dict[str, list[tuple]] = {}
    for x, key in keys:
        for name, r in refs.items():
            series.setdefault(f"unseen tasks, E_rel to {name}", []).append((x, first.relative(key, tasks, r)[0]))
        for label in ("same", "other") if seen else ():
            series.setdefault(f"training tasks, {label} data, E_rel to {method} tuning", []).append(
                (x, first.relative(f"{key}/{label}", seen, bank)[0]))
    lines = [f"**Intrinsic dimension (Fig. 3)**: IST through MSF subspaces of every d (first seed), E_rel % on the "
             f"unseen tasks {', '.join(tasks)} to {' and to '.join(refs)} (mean of their "
             f"{seeds_text(len(cfg['seeds']))})"
             + (f", and on the training tasks {', '.join(seen)} with the bank's data and with seed "
                f"{cfg['other_data_seed']}'s files, to their bank entries" if seen else "") + ":", ""]
    lines += _table_lines(["d", *series], [[x, *(None if s[j][1] is None else 100 * s[j][1]
                                                 for s in series.values())] for j, (x, _) in enumerate(keys)])
    drawn = {name: [(x, 100 * v, None) for x, v in s if v is not None] for name, s in series.items()}
    drawn = {name: points for name, points in drawn.items() if points}
    if png and drawn:
        files.append(interval_lines("IST, first seed", drawn,
                                    stem.parent / f"{stem.name}-d-sweep.png", xlabel="intrinsic dimension d",
                                    ylabel="E_rel (%)", lines={"the reference": 100.0}))
    return lines


def _mean_pct(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else 100 * mean(values)


def copy_beside(source: Path, stem: Path, name: str, *, png: bool = True) -> list[Path]:
    """``source`` copied next to the report as ``<stem>-<name>`` (a figure only with ``png``); the copies made."""
    import shutil

    if not source.is_file() or (source.suffix == ".png" and not png):
        return []
    target = stem.parent / f"{stem.name}-{name}"
    shutil.copyfile(source, target)
    return [target]


def landscape_lines(land: dict, out: Path, stem: Path, *, png: bool = True) -> tuple[list[str], list[Path]]:
    """The report's section on UDT's landscape, and its figure copied next to the report. A run recorded before
    the landscape followed the paper's measure (``mean_at_marks``: the mean of per-method ratios) is reported as
    it was."""
    lines = [f"## UDT landscape (Fig. 2) on {land['task']} ({land['split']}, seed {land['seed']})", "",
             f"The plane through the subspace solutions of {', '.join(land['order'])} (origin, u, v), a grid from "
             f"{land['axis'][0]:g} to {land['axis'][-1]:g}; each point scored by every method's up-projection"]
    origin = " At the origin: " + ", ".join(f"{m} {fmt(v)}" for m, v in land["origin_score"].items())
    if "overall_at_marks" in land:
        lines[-1] += (", its value the paper's P: the methods' mean score over E_PET, the mean of their "
                      f"original-space scores ({fmt(land['e_pet'])})." + origin + " (absolute %). P (%) at the "
                      "grid point nearest each method's solution: "
                      + ", ".join(f"{m} {v:.1f}" for m, v in land["overall_at_marks"].items()) + ".")
    else:
        lines[-1] += (", relative to its original-space score." + origin + " (absolute %). Mean relative "
                      "performance (%) at the grid point nearest each method's solution: "
                      + ", ".join(f"{m} {v:.1f}" for m, v in land["mean_at_marks"].items()) + ".")
    lines.append("")
    return lines, copy_beside(out / "landscape" / "landscape.png", stem, "landscape.png", png=png)
