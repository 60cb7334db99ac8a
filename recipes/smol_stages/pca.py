"""IPT's Fig. 8: the PCA of the intrinsic vectors, the training tasks' MSF codes with the unseen tasks' IST
solutions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from taskspace.analysis.pca import points_of_runs, training_codes, write_pca
from taskspace.subspace import Subspace

if TYPE_CHECKING:
    from smol import Runner


def pca(run: Runner, space: Subspace, method: str, runs: list[Path], out: Path) -> None:
    """The PCA of ``space``'s codes of the bank's ``method`` solutions and of the IST ``runs``' vectors, written in
    ``out`` and recorded under ``analyses.pca``."""
    points = training_codes(space, run.bank, method) + points_of_runs(runs)[0]
    run.results["analyses"]["pca"] = write_pca(points, out, png=run.png)
