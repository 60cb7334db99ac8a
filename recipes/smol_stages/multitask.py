"""IPT's Table IV: one theta of the IPT method tuned on the pooled training tasks, against each task's own."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from taskspace.deltas import default_lr
from taskspace.tuning import MultiTuneConfig, multitask_tune

from recipe_common import train_config

if TYPE_CHECKING:
    from smol import Runner


def multitask(run: Runner, m: dict, method: str, out: Path) -> None:
    """One ``method`` theta tuned on the pooled training tasks, against each task's own (the bank's)."""
    b = run.cfg["bank"]
    lr = b.get("lr", {}).get(method, default_lr(method))
    config = MultiTuneConfig(tasks=run.train_tasks, method=method, data_dir=run.data_dir,
                             method_options=dict(b["methods"][method]), backbone=run.backbone.name,
                             backbone_options=dict(run.cfg.get("backbone_options", {})),
                             data_seed=run.cfg["data_seed"], train=train_config({"lr": lr, **m["train"]}),
                             max_test_examples=run.cfg["max_test_examples"])
    scores = multitask_tune(config, out, backbone=run.backbone)
    for t, v in scores["tasks"].items():
        run.record(f"multitask/{method}", t, run.seeds[0], v)
