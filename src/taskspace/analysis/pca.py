"""PCA of intrinsic vectors (IPT's Fig. 8): the z that IST found on each task, and optionally the MSF codes of
the training tasks' solutions, projected on their first two principal components.

Each point is labelled by its task's category (cls / non-cls, from the catalog), its fine type, and whether it is
an IST solution or a training task's code; the explained variance of the two components is reported. The
points are written as a CSV a user can plot differently; the PNG colours them by category, with the marker
telling IST solutions from training codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError, DataError


@dataclass
class Point:
    label: str  # the run directory or "code:<task>"
    task: str
    category: str
    type: str
    group: str  # "IST" or "training code"
    z: torch.Tensor


def _info(task: str) -> tuple[str, str]:
    from ..tasks import CATALOG

    info = CATALOG.get(task)
    return (info.category, info.type) if info is not None else ("unknown", "unknown")


def points_of_runs(runs: list[str | Path]) -> tuple[list[Point], str | None]:
    """The IST solutions of subspace-tune runs (all in one subspace), and that subspace's folder."""
    from ..subspace import load_z
    from ..subspace.tune import same_subspace

    points, subspace = [], None
    for run in runs:
        z, saved = load_z(run)
        if subspace is None:
            subspace = saved["subspace"]
        elif not same_subspace(saved["subspace"], subspace):
            raise ConfigError(f"{run} was tuned in another subspace than {runs[0]}: a PCA compares vectors of one "
                              "subspace")
        task = saved["run"]["task"]
        points.append(Point(str(run), task, *_info(task), "IST", z.float()))
    return points, (subspace["path"] if subspace else None)


def training_codes(space, bank, method: str) -> list[Point]:
    """The MSF (or UDT down-projection) codes of the bank's solutions of the subspace's training tasks."""
    ms = space[method]
    if ms.down is None:
        raise ConfigError(f"the {space.recipe} subspace has no down-projection: it has no codes of training tasks")
    tasks = list(space.info.get("tasks", []))
    if not tasks:
        raise DataError("the subspace records no training tasks")
    thetas, _ = bank.stacked(tasks, method)
    with torch.no_grad():
        codes = ms.down((thetas.to(ms.anchor.device) - ms.anchor))
    return [Point(f"code:{t}", t, *_info(t), "training code", c.float().cpu()) for t, c in zip(tasks, codes)]


def pca(points: list[Point]) -> tuple[torch.Tensor, torch.Tensor]:
    """The points' coordinates on the first two principal components ``[N, 2]`` and the fraction of the variance
    each explains ``[2]``."""
    if len(points) < 3:
        raise ConfigError(f"{len(points)} vectors: a PCA needs at least 3")
    x = torch.stack([p.z for p in points]).double()
    x = x - x.mean(0)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    variance = s.square()
    k = min(2, vh.shape[0])
    coords = x @ vh[:k].T
    if k < 2:
        coords = torch.cat([coords, torch.zeros(len(points), 2 - k, dtype=coords.dtype)], 1)
    explained = variance[:2] / variance.sum() if variance.sum() > 0 else torch.zeros(2)
    if explained.numel() < 2:
        explained = torch.cat([explained, torch.zeros(2 - explained.numel(), dtype=explained.dtype)])
    return coords.float(), explained.float()


def write_pca(points: list[Point], out: str | Path, *, png: bool = True) -> dict:
    """``pca.csv`` (one row per point) and ``pca.png`` in ``out``; returns the explained variance."""
    import csv

    from ..store import write_text

    coords, explained = pca(points)
    out = Path(out)
    rows = [["label", "task", "category", "type", "group", "pc1", "pc2"]]
    rows += [[p.label, p.task, p.category, p.type, p.group, f"{c[0]:.6f}", f"{c[1]:.6f}"]
             for p, c in zip(points, coords.tolist())]
    import io

    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    write_text(out / "pca.csv", buf.getvalue())
    if png:
        _plot(points, coords, explained, out / "pca.png")
    return {"explained_variance": [round(float(v), 4) for v in explained], "points": len(points)}


def _plot(points: list[Point], coords: torch.Tensor, explained: torch.Tensor, path: Path) -> None:
    from .plots import pyplot, save_figure

    plt = pyplot("the PCA plot", " (or pass --no-png)")

    colours = {"cls": "tab:blue", "non-cls": "tab:orange", "unknown": "tab:grey"}
    markers = {"IST": "o", "training code": "^"}
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for category, colour in colours.items():
        for group, marker in markers.items():
            idx = [i for i, p in enumerate(points) if p.category == category and p.group == group]
            if idx:
                ax.scatter(coords[idx, 0], coords[idx, 1], c=colour, marker=marker, label=f"{category}, {group}",
                           alpha=0.8)
    ax.set(xlabel=f"PC1 ({100 * float(explained[0]):.1f} %)", ylabel=f"PC2 ({100 * float(explained[1]):.1f} %)",
           title="intrinsic vectors")
    ax.legend(fontsize=7)
    save_figure(fig, path)
