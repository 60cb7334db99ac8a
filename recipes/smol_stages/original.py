"""The original-space stages: the bank of the training tasks (the solutions a subspace is fitted to), the reference
of the unseen tasks (every seed: what each ratio divides by), their scores recorded, and the frozen backbone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from taskspace.frozen import frozen_score
from taskspace.subspace import BankSpec

from recipe_common import fmt, train_config

if TYPE_CHECKING:
    from smol import Runner


def bank_specs(run: Runner) -> tuple[BankSpec, BankSpec]:
    """The bank's spec (the training tasks, first seed) and the reference's (the unseen tasks, every seed; with the
    recipe's ``pool_test``, a task without a test file scored on its held-out pool)."""
    cfg, b = run.cfg, run.cfg["bank"]
    common = dict(methods=b["methods"], lr=b.get("lr", {}), train=train_config(b["train"]), data_dir=run.data_dir,
                  data_seed=cfg["data_seed"], max_test_examples=cfg["max_test_examples"], zero_shot=False)
    return (BankSpec.from_dict(common, tasks=run.train_tasks, seeds=run.seeds[:1]),
            BankSpec.from_dict(common, tasks=run.unseen, seeds=run.seeds, pool_test=cfg.get("pool_test", False)))


def report_entry(task, method, seed, scores) -> None:
    print(f"    {task:34s} {method:8s} s{seed} test {fmt(scores['test'])}", flush=True)


def record_banks(run: Runner) -> None:
    """The test scores of the reference (every seed) and of the bank, and the setting: the backbone, its
    fingerprint, the threads, each method's D."""
    b = run.cfg["bank"]
    for m in b["methods"]:
        for t in run.unseen:
            for s in run.seeds:
                run.record(f"reference/{m}", t, s, {"test": run.reference.score(t, m, seed=s)})
        for t in run.train_tasks:
            run.record(f"bank/{m}", t, run.seeds[0], {"test": run.bank.score(t, m)})
    run.results["setting"] = {
        "backbone": run.backbone.name, "fingerprint": run.backbone.fingerprint(),
        "describe": run.backbone.describe(), "threads": torch.get_num_threads(),
        "sizes": {m: run.bank.method(m).size for m in b["methods"]},
        # the unseen tasks scored on their held-out pools (no test file; the recipe's pool_test)
        "pool_tested": [t for t in run.unseen if run.reference_spec.test_split(t)[0].test_held_out]}


def frozen(run: Runner) -> None:
    """The frozen backbone on the test examples every run of a task is scored on (none recorded for a task without
    test examples: a challenge task with no test file, which its runs do not score either)."""
    done = run.results.setdefault("frozen", {})
    challenge = run.train_tasks[: run.cfg.get("ipt", {}).get("challenge_tasks", 0)]
    for spec, tasks in ((run.reference_spec, run.unseen), (run.bank_spec, challenge)):
        for t in tasks:
            if t not in done:
                task, test = spec.test_split(t)
                if not test:
                    print(f"    {t:34s} frozen   test – (no test examples)", flush=True)
                    continue
                done[t] = frozen_score(run.backbone, test, task.metric)  # shared with the runs' zero_shot
                print(f"    {t:34s} frozen   test {fmt(done[t])}", flush=True)
                run.save()
