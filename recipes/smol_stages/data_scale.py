"""IPT's Fig. 6: at K examples per label, a bank, a reference, MSF and IST of their own, on splits resampled from
the pooled files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from taskspace.subspace import BankSpec, FitData, MSFConfig, build_bank

from recipe_common import fit_saved

from .original import report_entry
from .tuning import tune_in

if TYPE_CHECKING:
    from smol import Runner


def data_scale(run: Runner, k: int, s: dict, method: str, msf: MSFConfig, folder: Path) -> None:
    """IPT's Fig. 6 at K examples per label (per task without fixed labels): train and dev of every task drawn
    CrossFit-style from the pooled files of the five seeds, then the bank's settings on ``s['train_tasks']``
    and the reference on ``s['tasks']`` (first seed), MSF at d on that bank and IST through it."""
    spec = {**run.reference_spec.to_dict(), "methods": {method: run.cfg["bank"]["methods"][method]},
            "lr": {method: run.reference_spec.lr[method]}, "resample": True, "resample_k": k}
    train, tasks = list(s["train_tasks"]), list(s["tasks"])
    bank = build_bank(folder / "bank", BankSpec.from_dict(spec, tasks=train, seeds=run.seeds[:1]),
                      run.backbone, report=report_entry)
    reference = build_bank(folder / "reference", BankSpec.from_dict(spec, tasks=tasks, seeds=run.seeds[:1]),
                           run.backbone, report=report_entry)
    for t in tasks:
        run.record(f"scale/k{k}/{method}", t, run.seeds[0], {"test": reference.score(t, method)})
    sub = folder / f"ipt-d{msf.d}"
    space = fit_saved("ipt", msf, FitData.from_bank(bank, train), sub)
    ist = run.cfg["ist"]
    tune_in(run, f"scale/k{k}/ipt", space, sub, tasks, method, ist["train"], seeds=run.seeds[:1],
            z_std=ist.get("z_std", 0.02), resample_k=k)
