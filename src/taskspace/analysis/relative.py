"""Relative performance, as both papers report it, written as CSV and Markdown tables.

``E_rel = mean over tasks of E(task) / E_reference(task)``, where the reference is the same method tuned in its
original space (or prompt tuning / fine-tuning where the paper compares with those). A task whose reference
score is not positive has no meaningful ratio; it is listed with an empty ratio and left out of the average, and
the table says how many were left out. :func:`gain_kept` measures against a baseline's score instead.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..store import write_text


def ratio(score: float | None, reference: float | None) -> float | None:
    if score is None or reference is None or not reference > 0:
        return None
    return score / reference


def mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


#: Two-sided 95 % quantiles of Student's t distribution, t_{0.975, df}, for df = 1 ... 30.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def mean_interval(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """The mean of ``values`` (None and non-finite left out), the half-width of its 95 % confidence interval
    (Student's t, sample standard deviation; None for fewer than two values), and how many values there were.
    Beyond 30 degrees of freedom the normal quantile 1.96 is used."""
    kept = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(kept)
    if n == 0:
        return None, None, 0
    centre = sum(kept) / n
    if n < 2:
        return centre, None, n
    sd = math.sqrt(sum((v - centre) ** 2 for v in kept) / (n - 1))
    t = T975[n - 2] if n - 1 <= len(T975) else 1.96
    return centre, t * sd / math.sqrt(n), n


def relative_mean(scores: Sequence[float | None], references: Sequence[float | None]) -> float | None:
    """E_rel: the mean over tasks of score / reference (tasks without a positive reference left out)."""
    return mean([ratio(s, r) for s, r in zip(scores, references)])


def transfer_matrix(scores: dict[str, dict[str, dict[str, float | None]]],
                    references: dict[str, dict[str, float | None]] | None) -> tuple[list[str], list[list]]:
    """UDT's transfer matrix from ``scores[source][target][task]`` and each target method's original-space
    ``references[target][task]``: the methods (sources and targets, sorted) and one row per source of the mean
    relative performance (%) per target, None where there is no pair or no reference."""
    methods = sorted(set(scores) | {t for targets in scores.values() for t in targets})
    rows = []
    for source in methods:
        row: list = [source]
        for target in methods:
            pairs = scores.get(source, {}).get(target, {})
            refs = (references or {}).get(target)
            row.append(None if not pairs or refs is None else
                       _pct(relative_mean(list(pairs.values()), [refs.get(t) for t in pairs])))
        rows.append(row)
    return methods, rows


def gain_kept(scores: dict[str, float | None], references: dict[str, float | None], baselines: dict[str, float],
              margin: float = 0.05) -> tuple[list[str], float | None, float | None]:
    """The share of a reference's gain over a baseline (the frozen backbone) that a score keeps:
    ``(E - E_baseline) / (E_reference - E_baseline)``, averaged over the tasks where the reference beats the
    baseline by at least ``margin`` (a stricter measure than :func:`ratio` when the baseline is strong: keeping
    the frozen model's behaviour scores 0, not ~100 %). Returns those tasks, the mean share and the references'
    mean gain on them (``None`` for both when no task qualifies)."""
    kept = [t for t, r in references.items()
            if r is not None and scores.get(t) is not None and r - baselines[t] >= margin]
    shares = [(scores[t] - baselines[t]) / (references[t] - baselines[t]) for t in kept]
    return kept, mean(shares), mean([references[t] - baselines[t] for t in kept])


@dataclass
class Table:
    """A titled table with a header row; cells are strings, numbers or None (written empty)."""

    title: str
    header: list[str]
    rows: list[list]
    notes: str = ""

    def markdown(self) -> str:
        def cell(v) -> str:
            if v is None:
                return "–"
            if isinstance(v, float):
                return f"{v:.1f}"
            return str(v)

        lines = [f"### {self.title}", "", "| " + " | ".join(self.header) + " |",
                 "| " + " | ".join("---" if i == 0 else "---:" for i in range(len(self.header))) + " |"]
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in self.rows]
        if self.notes:
            lines += ["", self.notes]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self.header)
        for row in self.rows:
            writer.writerow(["" if v is None else (f"{v:.4f}" if isinstance(v, float) else v) for v in row])
        return buf.getvalue()

    def write(self, path_stem: str | Path) -> None:
        stem = Path(path_stem)
        write_text(stem.with_suffix(".csv"), self.csv())
        write_text(stem.with_suffix(".md"), self.markdown())


def relative_table(title: str, tasks: Sequence[str], scores: Sequence[float | None],
                   references: Sequence[float | None], *, score_name: str = "subspace",
                   reference_name: str = "original", columns: dict[str, Sequence] | None = None) -> Table:
    """Per task: score, reference score (both in %), and their ratio (%); then the average row. ``columns`` adds
    named columns of per-task values after the task name (e.g. its category)."""
    ratios = [ratio(s, r) for s, r in zip(scores, references)]
    extra = dict(columns or {})
    rows = [[t, *(values[i] for values in extra.values()), _pct(s), _pct(r), _pct(q)]
            for i, (t, s, r, q) in enumerate(zip(tasks, scores, references, ratios))]
    left_out = sum(q is None for q in ratios)
    rows.append(["average", *("" for _ in extra), _pct(mean(scores)), _pct(mean(references)), _pct(mean(ratios))])
    notes = f"{left_out} task(s) without a positive reference score are left out of the average ratio." if left_out else ""
    return Table(title, ["task", *extra, f"{score_name} %", f"{reference_name} %", "relative %"], rows, notes)


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * x
