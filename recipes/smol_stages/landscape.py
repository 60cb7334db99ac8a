"""UDT's Fig. 2: the performance landscape on the plane through three methods' subspace solutions of one task."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from taskspace.analysis.landscape import landscape as landscape_grid
from taskspace.analysis.landscape import plot_landscape
from taskspace.store import write_json
from taskspace.subspace import Subspace, UnifiedConfig, load_z

if TYPE_CHECKING:
    from smol import Runner


def landscape(run: Runner, space: Subspace, fit: UnifiedConfig, settings: dict, folder: Path) -> None:
    """The plane through the first three methods' subspace solutions of one unseen task and seed (origin: the
    first, u toward the second, v toward the third), each grid point scored by every method's up-projection; a
    point's value is the paper's P, the methods' mean score over E_PET (the mean of their original-space scores on
    the same split)."""
    task, seed, split, order = settings["task"], settings["seed"], settings["split"], list(fit.methods)[:3]
    runs = {m: load_z(folder / "runs" / f"{task}-d{run.cfg['data_seed']}-{m}-s{seed}")[0] for m in order}
    loaded, test = run.reference_spec.test_split(task)
    examples = loaded.dev if split == "dev" else test
    references = {m: run.reference.score(task, m, split, seed=seed) for m in order}
    out = run.out / "landscape"
    result = landscape_grid(space, runs, order, examples, loaded.metric, references, out,
                            span=settings["span"], step=settings["step"])
    write_json(out / "landscape.json", {"task": task, "split": split, "seed": seed, **result,
                                        "marks": {m: list(v) for m, v in result["marks"].items()}})
    run.results["landscape"] = {"task": task, "split": split, "seed": seed, "axis": result["axis"],
                                "order": order, "origin_score": result["origin_score"], "e_pet": result["e_pet"],
                                "overall_at_marks": landscape_at_marks(result)}
    if run.png:
        plot_landscape(result, out / "landscape.png", f"{task}, {split}: unified d={space.d}")
    run.save()


def landscape_at_marks(result: dict) -> dict[str, float]:
    """The paper's P (the methods' mean score over E_PET, %) at the grid point nearest each method's own
    solution."""
    axis = result["axis"]

    def nearest(x: float) -> int:
        return min(range(len(axis)), key=lambda i: abs(axis[i] - x))

    return {m: result["overall"][nearest(b)][nearest(a)] for m, (a, b) in result["marks"].items()}
