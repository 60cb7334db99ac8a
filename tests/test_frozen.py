"""The frozen backbone's scores are computed once per exact computation and reused by every later run, bank entry
and recipe stage on the same examples; anything that could change them computes them again."""

from __future__ import annotations

import json

import pytest

from taskspace import frozen
from taskspace.backbones import load_backbone
from taskspace.cache import CACHE_ENV
from taskspace.cli import main
from taskspace.evaluation import capped_test_split, evaluate
from taskspace.tasks import load_task


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """A fresh cache folder, and the number of frozen evaluations actually computed (not read from the cache)."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    calls = []
    real = frozen.evaluate

    def counting(backbone, examples, *args, **kwargs):
        calls.append(len(examples))
        return real(backbone, examples, *args, **kwargs)

    monkeypatch.setattr(frozen, "evaluate", counting)
    return calls


def _tune(shared_dir, data_dir, out, method, *extra):
    assert main(["tune", "--task", "glue-sst2", "--method", method, "--backbone", f"{shared_dir}/models/stories260K",
                 "--backbone-opt", "max_output_length=4", "--data-dir", str(data_dir), "--out", str(out),
                 "--run-name", method, "--steps", "2", "--eval-every", "2", "--no-progress", *extra]) == 0
    return json.loads((out / method / "zero_shot.json").read_text())["frozen"]


def test_a_later_run_reuses_the_frozen_scores(counted, shared_dir, data_dir, tmp_path):
    first = _tune(shared_dir, data_dir, tmp_path / "a", "lora", "--max-test-examples", "8")
    assert counted == [16, 8]  # dev and test computed once
    assert _tune(shared_dir, data_dir, tmp_path / "b", "bitfit", "--max-test-examples", "8") == first
    assert counted == [16, 8]  # nothing computed again for another method on the same examples
    _tune(shared_dir, data_dir, tmp_path / "c", "prompt", "--max-test-examples", "6")
    assert counted == [16, 8, 6]  # another test subset: only the test split computed again


def test_the_cached_score_is_the_computed_one_and_nothing_else(counted, shared_dir, data_dir, monkeypatch):
    task = load_task("glue-sst2", str(data_dir))
    test = capped_test_split(task, 8, 0)
    llama = load_backbone(f"{shared_dir}/models/stories260K", decode="rank")
    value = frozen.frozen_score(llama, test, task.metric)
    assert value == evaluate(llama, test, task.metric)[0] and counted == [8]
    assert frozen.frozen_score(llama, test, task.metric) == value and counted == [8]
    frozen.frozen_score(llama, test, task.metric, batch_size=3)  # another batching
    frozen.frozen_score(llama, test, "EM")  # another metric
    frozen.frozen_score(load_backbone(f"{shared_dir}/models/stories260K", decode="generate",
                                      max_output_length=2), test, task.metric)  # another decode protocol
    frozen.frozen_score(llama, test[:7], task.metric)  # other examples
    assert counted == [8, 8, 8, 8, 7]
    monkeypatch.setattr(frozen, "_code_digest", lambda: "changed code")  # taskspace's prediction code changed
    assert frozen.frozen_score(llama, test, task.metric) == value and counted[-1:] == [8] and len(counted) == 6
    for path in (frozen.cache_dir() / frozen.FOLDER).glob("*.json"):  # a damaged cache: computed again
        path.write_text("{not json")
    assert frozen.frozen_score(llama, test, task.metric) == value and len(counted) == 7


def test_a_thetas_score_is_kept_for_that_theta_and_method_only(counted, shared_dir, data_dir, monkeypatch):
    import torch

    from taskspace.deltas import build_method

    task = load_task("glue-sst2", str(data_dir))
    test = capped_test_split(task, 8, 0)
    llama = load_backbone(f"{shared_dir}/models/stories260K", decode="rank")
    lora = build_method("lora", llama, {"r": 2})
    theta = torch.randn(lora.size, generator=torch.Generator().manual_seed(0))
    value = frozen.kept_score(llama, test, task.metric, method=lora, theta=theta)
    assert value == evaluate(llama, test, task.metric, method=lora, theta=theta)[0] and counted == [8]
    # the same values in another tensor: read, not computed
    assert frozen.kept_score(llama, test, task.metric, method=lora, theta=theta.clone()) == value and counted == [8]
    frozen.kept_score(llama, test, task.metric, method=lora, theta=theta * 2)  # another theta
    frozen.kept_score(llama, test, task.metric, method=build_method("lora", llama, {"r": 2, "alpha": 4.0}),
                      theta=theta)  # the same size, other options
    frozen.kept_score(llama, test, task.metric)  # the frozen backbone is not any theta
    assert counted == [8, 8, 8, 8]
    real = frozen._code_digest
    monkeypatch.setattr(frozen, "_code_digest", lambda deltas=False: "changed" if deltas else real())
    assert frozen.kept_score(llama, test, task.metric) == frozen.frozen_score(llama, test, task.metric)
    assert len(counted) == 4  # the delta methods' code changed: the frozen score stands, ...
    assert frozen.kept_score(llama, test, task.metric, method=lora, theta=theta) == value and len(counted) == 5
    with pytest.raises(ValueError, match="method and theta together"):
        frozen.kept_score(llama, test, task.metric, theta=theta)
