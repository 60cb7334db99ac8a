"""IPT's random subspaces at a d, the baselines of a learnt one: the random auto-encoder (of the IPT method, with
MSF's hidden size) and Fastfood (DID: all weights)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from taskspace.subspace import FastfoodConfig, FitData, MSFConfig, RandomAEConfig, Subspace

from recipe_common import fit_saved

if TYPE_CHECKING:
    from smol import Runner


def random_ae_space(run: Runner, d: int, msf: MSFConfig) -> tuple[Subspace, Path]:
    """The random auto-encoder at ``d`` in ``random-ae-d<d>`` (made once, then loaded), and its folder."""
    folder = run.out / f"random-ae-d{d}"
    config = RandomAEConfig(method=msf.method, d=d, hidden=msf.hidden, seed=17)
    return fit_saved("random-ae", config, FitData.from_bank(run.bank, []), folder), folder


def fastfood_space(run: Runner, d: int) -> tuple[Subspace, Path]:
    """The Fastfood projection of all weights at ``d`` in ``fastfood-d<d>`` (made once, then loaded), and its
    folder."""
    folder = run.out / f"fastfood-d{d}"
    return fit_saved("fastfood", FastfoodConfig(d=d, seed=23), FitData(run.backbone, []), folder), folder
