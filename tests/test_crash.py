"""Crash safety: a command killed with SIGKILL (a real one, in a subprocess) at two points and run again finishes
with the same tensors and scores as an uninterrupted run, for tune, bank, fit-subspace and subspace-tune."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from taskspace.store import read_tensors

#: Every test here trains or fits for seconds to minutes: the fast tier (-m "not slow") leaves them out.
pytestmark = pytest.mark.slow

RUN = "import sys; from taskspace.cli import main; sys.exit(main(sys.argv[1:]))"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(argv: list[str]) -> None:
    subprocess.run([sys.executable, "-c", RUN, *argv], check=True, env=ENV, timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_when(argv: list[str], ready, timeout: float = 240) -> None:
    """Start the command, SIGKILL it as soon as ``ready()`` holds; it must not have finished by then."""
    proc = subprocess.Popen([sys.executable, "-c", RUN, *argv], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "the command finished before it could be killed"
            assert time.time() < deadline, "the command never reached the point to kill it at"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _logged_step(log: Path, step: int):
    def ready() -> bool:
        try:
            lines = log.read_text().splitlines()
        except FileNotFoundError:
            return False
        return any(json.loads(line).get("step", -1) >= step for line in lines if line.strip())

    return ready


def _same_tensors(a: Path, b: Path) -> None:
    ta, tb = read_tensors(a), read_tensors(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), (a, key)


def _scores(run: Path) -> dict:
    scores = json.loads((run / "scores.json").read_text())
    return {k: scores[k] for k in ("dev", "test", "best_step", "steps")}


@pytest.fixture(scope="module")
def common(shared_dir, data_dir):
    return ["--backbone", f"{shared_dir}/models/stories260K", "--data-dir", str(data_dir), "--no-progress",
            "--backbone-opt", "max_output_length=4"]


def test_tune_killed_twice_resumes_to_the_uninterrupted_run(tmp_path, common):
    argv = ["tune", "--task", "glue-sst2", "--method", "lora", "--opt", "r=2", "--steps", "120", "--eval-every", "20",
            "--max-test-examples", "8", "--run-name", "r", *common]
    _run([*argv, "--out", str(tmp_path / "whole")])
    killed = tmp_path / "killed"
    _kill_when([*argv, "--out", str(killed)], _logged_step(killed / "r" / "log.jsonl", 20))
    _kill_when([*argv, "--out", str(killed)], _logged_step(killed / "r" / "log.jsonl", 60))
    _run([*argv, "--out", str(killed)])
    _same_tensors(tmp_path / "whole" / "r" / "theta.safetensors", killed / "r" / "theta.safetensors")
    assert _scores(tmp_path / "whole" / "r") == _scores(killed / "r")


def test_bank_killed_between_and_within_entries_resumes(tmp_path, common):
    argv = ["bank", "--methods", "lora", "--opt", "lora.r=2", "--tasks", "glue-sst2", "superglue-copa",
            "--steps", "80", "--eval-every", "20", "--max-test-examples", "8", *common]
    _run([*argv, "--out", str(tmp_path / "whole")])
    killed = tmp_path / "killed"
    first, second = (killed / task / "lora" / "s0" for task in ("glue-sst2", "superglue-copa"))
    _kill_when([*argv, "--out", str(killed)], _logged_step(first / "log.jsonl", 20))
    assert not (first / "scores.json").exists()
    _kill_when([*argv, "--out", str(killed)], _logged_step(second / "log.jsonl", 20))
    assert (killed / "glue-sst2" / "lora" / "s0" / "scores.json").is_file() and not (second / "scores.json").exists()
    _run([*argv, "--out", str(killed)])
    for task in ("glue-sst2", "superglue-copa"):
        entry = Path(task) / "lora" / "s0"
        _same_tensors(tmp_path / "whole" / entry / "theta.safetensors", killed / entry / "theta.safetensors")
        assert _scores(tmp_path / "whole" / entry) == _scores(killed / entry)


@pytest.fixture(scope="module")
def small_bank(tmp_path_factory, shared_dir, data_dir):
    folder = tmp_path_factory.mktemp("bank")
    _run(["bank", "--out", str(folder), "--methods", "lora", "adapter", "--opt", "lora.r=2", "--opt", "adapter.r=2",
          "--tasks", "glue-sst2", "superglue-copa", "--steps", "4", "--eval-every", "2", "--max-test-examples", "4",
          "--backbone", f"{shared_dir}/models/stories260K", "--data-dir", str(data_dir), "--no-progress"])
    return folder


def test_fit_subspace_killed_resumes(tmp_path, common, small_bank):
    argv = ["fit-subspace", "--recipe", "unified", "--bank", str(small_bank), "--tasks", "glue-sst2",
            "superglue-copa", "--methods", "lora", "adapter", "--d", "3", "--steps", "120", "--eval-every", "20",
            *common]
    _run([*argv, "--out", str(tmp_path / "whole")])
    killed = tmp_path / "killed"
    _kill_when([*argv, "--out", str(killed)], _logged_step(killed / "fit" / "log.jsonl", 20))
    _kill_when([*argv, "--out", str(killed)], _logged_step(killed / "fit" / "log.jsonl", 60))
    assert not (killed / "subspace.json").exists()
    _run([*argv, "--out", str(killed)])
    for tensors in sorted((tmp_path / "whole").glob("*.safetensors")):
        _same_tensors(tensors, killed / tensors.name)


def test_subspace_tune_killed_resumes(tmp_path, common, small_bank, shared_dir, data_dir):
    space = tmp_path / "space"
    _run(["fit-subspace", "--recipe", "unified", "--bank", str(small_bank), "--tasks", "glue-sst2", "--methods",
          "lora", "adapter", "--d", "3", "--steps", "4", "--eval-every", "2", "--out", str(space), *common])
    argv = ["subspace-tune", "--subspace", str(space), "--task", "superglue-copa", "--method", "lora",
            "--steps", "120", "--eval-every", "20", "--max-test-examples", "8", *common]
    _run([*argv, "--out", str(tmp_path / "whole")])
    killed = tmp_path / "killed"
    _kill_when([*argv, "--out", str(killed)], _logged_step(killed / "log.jsonl", 20))
    _kill_when([*argv, "--out", str(killed)], _logged_step(killed / "log.jsonl", 60))
    _run([*argv, "--out", str(killed)])
    _same_tensors(tmp_path / "whole" / "trainable.safetensors", killed / "trainable.safetensors")
    _same_tensors(tmp_path / "whole" / "trajectory.safetensors", killed / "trajectory.safetensors")  # every step's z
    assert _scores(tmp_path / "whole") == _scores(killed)
