"""Training curves as a PNG next to a run's ``log.jsonl``: ``taskspace plot RUN``.

Two panels: the training loss (its running mean, as logged) and the dev score at each evaluation, with the frozen
backbone's dev score and the chosen (best) step marked when the run recorded them. matplotlib is an optional
dependency (``pip install "taskspace[plots]"``); it is drawn without a display (the Agg backend).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from ..errors import ConfigError, DataError
from ..store import read_json

PLOT = "training.png"
#: The training-loss curve marks its points when it has at most this many (a longer one is a plain line).
_MARKED = 20


def pyplot(what: str = "the plot", hint: str = ""):
    """matplotlib's pyplot on the Agg backend (no display), or one line saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(f"{what} needs matplotlib: pip install 'taskspace[plots]'{hint}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Lay ``fig`` out, write it to ``path`` (its folder created) and close it; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def read_log(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        raise DataError("no log.jsonl: expected a run directory that tune, subspace-tune or a bank entry wrote",
                        run_dir)
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON ({e.msg})", path, number) from None
    if not records:
        raise DataError("empty log: the run has not logged a step yet", path)
    return records


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw ``run_dir``'s training curves into ``out`` (default ``<run>/training.png``); returns the path."""
    plt = pyplot("taskspace plot")

    run_dir = Path(run_dir)
    records = read_log(run_dir)
    train = [r for r in records if "loss" in r]
    dev = [r for r in records if "dev" in r]
    scores = read_json(run_dir / "scores.json") if (run_dir / "scores.json").is_file() else {}
    metric = scores.get("metric", "dev score")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    # a line needs two points: a short run's loss (one or two evaluations) is drawn as markers too
    left.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue",
              marker="o" if len(train) <= _MARKED else None)
    left.set(xlabel="step", ylabel="training loss", title="loss")
    right.plot([r["step"] for r in dev], [100 * r["dev"] for r in dev], marker="o", color="tab:green",
               label="dev")
    frozen = (scores.get("zero_shot") or {}).get("frozen", {}).get("dev")
    if frozen is not None:
        right.axhline(100 * frozen, color="grey", linestyle="--", label="frozen backbone")
    if scores.get("best_step") is not None:
        right.axvline(scores["best_step"], color="tab:red", linestyle=":", label=f"best step {scores['best_step']}")
    right.set(xlabel="step", ylabel=f"dev {metric} (%)", title="dev")
    right.legend(loc="best", fontsize=8)
    fig.suptitle(run_dir.name, fontsize=9)
    return save_figure(fig, Path(out) if out is not None else run_dir / PLOT)


def heatmap(title: str, rows: list[str], columns: list[str], values: list[list[float | None]], path: str | Path,
            *, unit: str = "%") -> Path:
    """A matrix as a heat map with its numbers written in the cells (empty cells for None)."""
    plt = pyplot("the heat map")
    import numpy as np

    data = np.array([[np.nan if v is None else float(v) for v in row] for row in values])
    fig, ax = plt.subplots(figsize=(1.2 * len(columns) + 2, 1.0 * len(rows) + 1.5))
    image = ax.imshow(data, cmap="viridis")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), rows)
    for i in range(len(rows)):
        for j in range(len(columns)):
            if not np.isnan(data[i, j]):
                ax.text(j, i, f"{data[i, j]:.1f}", ha="center", va="center", color="white", fontsize=9)
    fig.colorbar(image, ax=ax, label=unit)
    ax.set_title(textwrap.fill(title, 12 * len(columns) + 16), fontsize=9)  # within the axes, clear of the bar
    return save_figure(fig, path)


def interval_lines(title: str, series: dict[str, list[tuple[float, float, float | None]]], path: str | Path, *,
                   xlabel: str, ylabel: str, lines: dict[str, float] | None = None, log_x: bool = True) -> Path:
    """Lines through ``(x, centre, half-width)`` points, each with its interval as an error bar (none where the
    half-width is None), and horizontal reference ``lines`` (label -> value)."""
    plt = pyplot("the plot")
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for label, points in series.items():
        points = sorted(points)
        ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] or 0.0 for p in points],
                    marker="o", capsize=4, label=label)
    for (label, value), style in zip((lines or {}).items(), ("--", ":", "-.")):
        ax.axhline(value, color="grey", linestyle=style, label=label)
    if log_x:
        ax.set_xscale("log")
    xs = sorted({p[0] for points in series.values() for p in points})
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="best", fontsize=8)
    return save_figure(fig, path)
