"""Several processes: a bank launched by torchrun (2 gloo processes, one thread each) shares its entries out over
the ranks and ends as the same bank that one process builds; a rerun completes what a killed launch left."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import torch

from taskspace.cli import main

TASKS = ["glue-sst2", "superglue-copa"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bank_args(out, data_dir, shared_dir):
    return ["bank", "--out", str(out), "--methods", "bitfit", "--tasks", *TASKS, "--seeds", "0", "1",
            "--backbone", f"{shared_dir}/models/stories260K", "--decode", "rank", "--data-dir", str(data_dir),
            "--steps", "2", "--eval-every", "2", "--max-test-examples", "4", "--no-progress"]


def test_torchrun_shares_a_bank_out_and_builds_what_one_process_builds(tmp_path, data_dir, shared_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
              "--master-port", str(_free_port()), "-m", "taskspace", *_bank_args(tmp_path / "dist", data_dir, shared_dir)]
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # each rank tuned its own entries: rank 0 the 1st and 3rd, rank 1 the 2nd and 4th, in (task, method, seed) order
    assert done.stdout.count("seed 0") == 2 and done.stdout.count("seed 1") == 2
    assert (tmp_path / "dist" / "scores.md").is_file()  # written once, by rank 0, after it checked every entry
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as the launched processes
    try:
        assert main(_bank_args(tmp_path / "one", data_dir, shared_dir)) == 0
    finally:
        torch.set_num_threads(threads)
    for task in TASKS:
        for seed in (0, 1):
            a = json.loads((tmp_path / "dist" / task / "bitfit" / f"s{seed}" / "scores.json").read_text())
            b = json.loads((tmp_path / "one" / task / "bitfit" / f"s{seed}" / "scores.json").read_text())
            assert (a["dev"], a["test"], a["best_step"]) == (b["dev"], b["test"], b["best_step"])
            from safetensors.torch import load_file

            ta = load_file(str(tmp_path / "dist" / task / "bitfit" / f"s{seed}" / "theta.safetensors"))["theta"]
            tb = load_file(str(tmp_path / "one" / task / "bitfit" / f"s{seed}" / "theta.safetensors"))["theta"]
            torch.testing.assert_close(ta, tb, rtol=1e-5, atol=1e-6)


def test_a_rerun_completes_what_a_dead_rank_left(tmp_path, data_dir, shared_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def launch():
        return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "taskspace",
                               *_bank_args(tmp_path / "b", data_dir, shared_dir)],
                              env=env, capture_output=True, text=True, timeout=600)

    assert launch().returncode == 0
    lost = tmp_path / "b" / TASKS[1] / "bitfit" / "s1"
    kept = tmp_path / "b" / TASKS[0] / "bitfit" / "s0"
    (lost / "scores.json").unlink()  # as a rank killed before it finished this entry leaves it
    before = (kept / "scores.json").stat().st_mtime_ns
    done = launch()
    assert done.returncode == 0, done.stderr[-3000:]
    assert (lost / "scores.json").is_file()  # completed
    assert (kept / "scores.json").stat().st_mtime_ns == before  # a finished entry is verified, not tuned again
