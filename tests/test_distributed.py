"""Several processes: a bank launched by torchrun (2 gloo processes, one thread each) shares its entries out over
the ranks and ends as the same bank that one process builds; a rerun completes what a killed launch left."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from taskspace.cli import main

#: Every test here trains or fits for seconds to minutes: the fast tier (-m "not slow") leaves them out.
pytestmark = pytest.mark.slow

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


def _torchrun(args, env):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                           "127.0.0.1", "--master-port", str(_free_port()), "-m", "taskspace", *args],
                          env=env, capture_output=True, text=True, timeout=600)


def test_fits_and_subspace_tuning_run_data_parallel(tmp_path, data_dir, shared_dir):
    """fit-subspace and subspace-tune launched on 2 gloo processes split each step's batch over them and sum the
    gradients: the subspace and the tuned z equal the one-process results (up to the order of float sums); only
    rank 0 writes, and it prints once. (``--set d=3``: torchrun would read ``--d`` as an abbreviation of its own
    options.)"""
    from safetensors.torch import load_file

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    llama = f"{shared_dir}/models/stories260K"
    common = ["--data-dir", str(data_dir), "--no-progress", "--max-test-examples", "4"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as the launched processes
    try:
        assert main(["bank", "--out", str(tmp_path / "bank"), "--methods", "prompt", "--opt", "prompt.n_tokens=2",
                     "--tasks", *TASKS, "--backbone", llama, "--decode", "rank", "--steps", "2", "--eval-every", "2",
                     *common]) == 0
        fit = ["fit-subspace", "--recipe", "ipt", "--bank", str(tmp_path / "bank"), "--tasks", *TASKS, "--set", "d=3",
               "--hidden", "4", "--steps", "3", "--eval-every", "3", "--batch-size", "5", "--data-dir", str(data_dir),
               "--no-progress"]
        assert main([*fit, "--out", str(tmp_path / "one")]) == 0
        tune = ["subspace-tune", "--task", "glue-sst2", "--method", "prompt", "--steps", "3", "--eval-every", "3",
                "--batch-size", "5", "--lr", "0.5", *common]
        assert main([*tune, "--subspace", str(tmp_path / "one"), "--out", str(tmp_path / "z-one")]) == 0
    finally:
        torch.set_num_threads(threads)
    done = _torchrun([*fit, "--out", str(tmp_path / "two")], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("subspace, d = 3") == 1  # rank 1 prints nothing
    a = load_file(str(tmp_path / "one" / "subspace.safetensors"))
    b = load_file(str(tmp_path / "two" / "subspace.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)
    fitted = json.loads((tmp_path / "two" / "subspace.json").read_text())["info"]
    assert fitted["best_step"] == json.loads((tmp_path / "one" / "subspace.json").read_text())["info"]["best_step"]

    done = _torchrun([*tune, "--subspace", str(tmp_path / "one"), "--out", str(tmp_path / "z-two")], env)
    assert done.returncode == 0, done.stderr[-3000:]
    za = load_file(str(tmp_path / "z-one" / "trainable.safetensors"))
    zb = load_file(str(tmp_path / "z-two" / "trainable.safetensors"))
    for key in za:
        torch.testing.assert_close(za[key], zb[key], rtol=1e-4, atol=1e-6)
    sa = json.loads((tmp_path / "z-one" / "scores.json").read_text())
    sb = json.loads((tmp_path / "z-two" / "scores.json").read_text())
    assert (sa["dev"], sa["test"], sa["best_step"]) == (sb["dev"], sb["test"], sb["best_step"])
    # the z actually moved: a test that compares two untrained vectors would pass for the wrong reason
    assert not torch.equal(za[next(iter(za))], torch.zeros_like(za[next(iter(za))]))
