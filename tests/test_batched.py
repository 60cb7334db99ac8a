"""Several tasks in one pass: ``bank --batched K`` trains K tasks of one method and seed with one forward and
backward pass per step (each example with its own task's theta) and builds the bank that one task at a time
builds."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from taskspace.cli import main
from taskspace.subspace.bank import passes

TASKS = ["glue-sst2", "superglue-copa", "ag_news"]


def test_passes_group_tasks_of_one_method_and_seed():
    entries = [(t, m, s) for t in ("a", "b", "c") for m in ("lora", "finetune") for s in (0, 1)]
    groups = passes(entries, 2)
    assert [("a", "lora", 0), ("b", "lora", 0)] in groups and [("c", "lora", 0)] in groups
    assert all(len(g) == 1 for g in groups if g[0][1] == "finetune")  # no per-example theta: one at a time
    assert sorted(e for g in groups for e in g) == sorted(entries)


@pytest.mark.slow
def test_a_batched_bank_is_the_bank_of_one_task_at_a_time(tmp_path, data_dir, shared_dir, monkeypatch):
    import taskspace.subspace.bank as bank_module

    together = []
    tune_together = bank_module.tune_together
    monkeypatch.setattr(bank_module, "tune_together",
                        lambda configs, *a, **k: together.append(len(configs)) or tune_together(configs, *a, **k))
    args = ["bank", "--methods", "lora", "prompt", "--opt", "lora.r=2", "--opt", "prompt.n_tokens=2", "--tasks",
            *TASKS, "--seeds", "0", "--backbone", f"{shared_dir}/models/stories260K", "--decode", "rank",
            "--data-dir", str(data_dir), "--steps", "6", "--eval-every", "2", "--patience", "1",
            "--max-test-examples", "4", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--out", str(tmp_path / "batched"), "--batched", "2"]) == 0
    assert together == [2, 2]  # sst2 + copa for each method; ag_news alone, by plain tune
    stopped = 0
    for task in TASKS:
        for method in ("lora", "prompt"):
            a, b = (tmp_path / bank / task / method / "s0" for bank in ("one", "batched"))
            sa, sb = (json.loads((x / "scores.json").read_text()) for x in (a, b))
            assert (sa["best_step"], sa["steps"], sa["stopped_early"]) == (sb["best_step"], sb["steps"],
                                                                            sb["stopped_early"])
            assert sa["dev"] == pytest.approx(sb["dev"], abs=1e-6) and sa["test"] == pytest.approx(sb["test"], abs=1e-6)
            torch.testing.assert_close(load_file(str(a / "theta.safetensors"))["theta"],
                                       load_file(str(b / "theta.safetensors"))["theta"], rtol=1e-4, atol=1e-5)
            stopped += sa["stopped_early"]
            # the pass's wall time is shared: a run trained with others says with how many
            assert "trained_together" not in sa and sb.get("trained_together") == (None if task == "ag_news" else 2)
    assert stopped >= 1  # a task that stops early leaves its pass while its partner goes on
    # the same bank: a rerun without --batched finds every entry finished
    assert main([*args, "--out", str(tmp_path / "batched")]) == 0
    assert json.loads((tmp_path / "batched" / "bank.json").read_text()) == json.loads(
        (tmp_path / "one" / "bank.json").read_text())
