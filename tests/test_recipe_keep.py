"""recipes/keep_runs.py: a run folder's finished runs kept in a folder to commit, and restored on a fresh machine so
that the runner reuses them (verified, not trained again)."""

from __future__ import annotations

import pytest

from test_recipes import _recipes

TASK = "glue-sst2"


def _config(shared_dir, data_dir, steps=2):
    from taskspace.train import TrainConfig
    from taskspace.tuning import TuneConfig

    return TuneConfig(task=TASK, method="prompt", data_dir=str(data_dir),
                      backbone=str(shared_dir / "models" / "stories260K"), method_options={"n_tokens": 2},
                      train=TrainConfig(steps=steps, batch_size=2, eval_every=1, lr=0.3, progress=False),
                      max_test_examples=4, zero_shot=False, keep_checkpoint=True)


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_kept_runs_are_restored_and_reused(tmp_path, shared_dir, data_dir, monkeypatch, capsys):
    from taskspace.errors import ConfigError, DataError
    from taskspace.store import write_json
    from taskspace.tuning import tune

    keep = _recipes("keep_runs")
    out, kept, fresh = tmp_path / "out", tmp_path / "kept", tmp_path / "fresh"
    run = out / "bank" / TASK / "prompt" / "s0"
    tune(_config(shared_dir, data_dir), run)
    assert (run / "checkpoint").is_dir()  # kept by the run: never by keep_runs
    unfinished = out / "bank" / "trec" / "prompt" / "s0"
    write_json(unfinished / "config.json", {"run": "unfinished"})
    write_json(unfinished / "checkpoint" / "state.json", {})
    big = out / "udt" / "runs" / "lora-s0"
    write_json(big / "scores.json", {"test": 0.5})
    (big / "theta.safetensors").write_bytes(b"0" * 200_000)
    write_json(out / "ipt-d2" / "subspace.json", {"d": 2})  # a fitted subspace: not a run, useless without its
    (out / "ipt-d2" / "subspace.safetensors").write_bytes(b"0" * 64)  # tensors
    write_json(out / "stages.json", {"bank": 60.0})
    write_json(out / "bank" / "bank.json", {"format": "taskspace.bank/1"})

    line = keep.save(out, kept, 100_000)
    assert line.startswith(f"{out}: 1 finished runs and 2 records kept in {kept}")
    assert "not kept, a file over 100000 bytes: 1 runs (udt/runs/lora-s0)" in line
    names = set(_files(kept))
    assert {"stages.json", "bank/bank.json", "bank/glue-sst2/prompt/s0/scores.json"} <= names
    assert "bank/glue-sst2/prompt/s0/theta.safetensors" in names
    assert (run / "predictions" / "test.jsonl").is_file()  # they quote the data: never kept
    assert not any(p in n for n in names for p in ("checkpoint", ".lock", "predictions", "trec", "udt", "ipt-d2"))
    assert "(0 files new or changed)" in keep.save(out, kept, 100_000)  # nothing new: nothing copied

    # a fresh machine: restored, the same command finds the run finished and trains nothing
    assert keep.restore(kept, fresh) == f"{fresh}: {len(names)} files restored from {kept}, 1 finished runs among them"
    restored = _files(fresh)
    result = tune(_config(shared_dir, data_dir), fresh / "bank" / TASK / "prompt" / "s0")
    assert _files(fresh) == restored and not (fresh / "bank" / TASK / "prompt" / "s0" / "checkpoint").exists()
    assert result.scores == tune(_config(shared_dir, data_dir), run).scores
    with pytest.raises(ConfigError):  # a kept run is never reused for other settings
        tune(_config(shared_dir, data_dir, steps=3), fresh / "bank" / TASK / "prompt" / "s0")
    assert keep.restore(kept, fresh).startswith(f"{fresh}: 0 files restored")

    # a run folder that has moved on since it was kept: refused in one line, nothing restored
    (fresh / "bank" / TASK / "prompt" / "s0" / "log.jsonl").unlink()
    write_json(fresh / "stages.json", {"bank": 90.0})
    with pytest.raises(DataError, match="stages.json: differs from the kept"):
        keep.restore(kept, fresh)
    assert not (fresh / "bank" / TASK / "prompt" / "s0" / "log.jsonl").exists()
    monkeypatch.setattr("sys.argv", ["keep_runs.py", "restore", str(kept), str(fresh)])
    with pytest.raises(SystemExit) as exit_:
        keep.run_main(keep.main)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"keep_runs.py: error: {fresh / 'stages.json'}: differs from the kept")
    with pytest.raises(DataError, match="no such run folder"):
        keep.save(tmp_path / "none", kept, 100_000)


def test_what_save_keeps_is_not_git_ignored(tmp_path):
    """Every file ``save`` writes under the repository's kept/ folder would be committed: a subspace's runs live in a
    folder named ``runs/``, which .gitignore ignores elsewhere (the runners' output)."""
    import shutil
    import subprocess

    from conftest import REPO
    from taskspace.store import write_json

    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: .gitignore has nothing to decide")
    keep = _recipes("keep_runs")
    out, kept = tmp_path / "out", tmp_path / "kept"
    for run in (out / "bank" / TASK / "prompt" / "s0", out / "ipt-d100" / "runs" / f"{TASK}-d100-prompt-s0"):
        write_json(run / "config.json", {})
        write_json(run / "scores.json", {"test": 0.5})
        (run / "theta.safetensors").write_bytes(b"0" * 64)
    write_json(out / "stages.json", {"bank": 60.0})
    keep.save(out, kept, 100_000)
    paths = sorted(f"kept/example/{p.relative_to(kept)}" for p in kept.rglob("*") if p.is_file())
    assert len(paths) == 7
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=REPO, input="\n".join(paths),
                             capture_output=True, text=True)
    assert ignored.returncode in (0, 1), ignored.stderr  # 1: none ignored
    assert ignored.stdout.split() == []
