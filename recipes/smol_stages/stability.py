"""IPT's Table III: the spread over seeds of prompt tuning, IST and fine-tuning, and prompt tuning started from the
IST solutions (§V-E); its fine-tuning runs are also the reference of E_rel against fine-tuning (Fig. 3b, 9)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from taskspace.analysis.stability import stability_table
from taskspace.deltas import default_lr
from taskspace.subspace import BankSpec, build_bank
from taskspace.subspace.bank import entry_dir
from taskspace.tuning import tune

from recipe_common import fmt, train_config

from .original import report_entry
from .tuning import ist_runs

if TYPE_CHECKING:
    from smol import Runner


def stability(run: Runner, s: dict, method: str, main: Path, folder: Path) -> None:
    """Std over the seeds of the reference (prompt tuning), of IST at d and of fine-tuning on ``s['tasks']``;
    and prompt tuning initialised from each IST solution (IPT §V-E)."""
    tasks = list(s.get("tasks", run.unseen))
    reference = [entry_dir(run.out / "reference", t, method, seed) for t in tasks for seed in run.seeds]
    ist = ist_runs(run, main, tasks, method)
    runs = reference + ist
    if "finetune" in s:
        spec = BankSpec.from_dict({**run.reference_spec.to_dict(), "methods": {"finetune": {}},
                                   "lr": {"finetune": s["finetune"].get("lr", default_lr("finetune"))},
                                   "train": train_config({**run.cfg["bank"]["train"], **s["finetune"],
                                                          "lr": None})}, tasks=tasks)
        finetuned = build_bank(folder / "finetune", spec, run.backbone, report=report_entry)
        for t in tasks:
            for seed in run.seeds:  # the reference of IPT's Fig. 3b / 9 (E_rel against fine-tuning)
                run.record("stability/finetune", t, seed, {"test": finetuned.score(t, "finetune", seed=seed)})
        runs += [entry_dir(folder / "finetune", t, "finetune", seed) for t in tasks for seed in run.seeds]
    if s.get("from_ist", True):
        for t in tasks:
            for seed in run.seeds:
                source = ist_runs(run, main, [t], method, [seed])[0] / "theta"
                config = run.reference_spec.tune_config(t, method, seed, run.backbone)
                out = folder / "from-ist" / f"{t}-s{seed}"
                scores = tune(config.replace(init_from=str(source)), out, backbone=run.backbone).scores
                run.record(f"from-ist/{method}", t, seed, scores)
                print(f"    {t:34s} {method:8s} s{seed} from IST, test {fmt(scores['test'])}", flush=True)
                runs.append(out)
    summary, detail = stability_table(runs)
    run.results["analyses"]["stability"] = {"summary": summary.rows, "header": summary.header,
                                            "tasks": tasks}
    summary.write(folder / "stability")
    detail.write(folder / "stability_tasks")
