"""What only a CUDA device can show (skipped without one; ``benchmarks/gpu.sh`` runs them on a GPU machine): a
resumed run replays the CUDA generator, a run killed on the GPU resumes to the same theta, the frozen weights are
bfloat16 by default while theta and the optimiser state stay float32, prefix gradients under flex attention equal
sdpa's (PyTorch has no flex backward on the CPU), Fastfood draws the same transform on every device, and several
tasks trained in one pass equal their separate runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from taskspace.backbones import load_backbone
from taskspace.deltas import FlatParameters, build_method
from taskspace.projections import Fastfood
from taskspace.runs import joint_theta_loss
from taskspace.store import read_tensors
from taskspace.tasks import Example, load_task
from taskspace.train import TrainConfig, TrainJob, train, train_many

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

RUN = "import sys; from taskspace.cli import main; sys.exit(main(sys.argv[1:]))"


class CudaQuadratic(torch.nn.Module):
    """theta pulled towards per-example targets through a dropout on the GPU (the CUDA generator in play)."""

    def __init__(self):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(64, device="cuda"))
        self.drop = torch.nn.Dropout(0.5)

    def loss(self, examples, targets):
        goal = torch.tensor([[float(t[1:])] * 64 for t in targets], device="cuda")
        return ((self.drop(self.theta.expand_as(goal)) - goal) ** 2).mean()


def test_a_resumed_cuda_run_replays_the_cuda_generator(tmp_path):
    examples = [Example(f"x{i}", (f"y{i}",)) for i in range(10)]
    config = TrainConfig(steps=10, batch_size=3, lr=0.1, eval_every=2, progress=False)

    def run(path, fail_at=None):
        model, calls = CudaQuadratic(), {"n": 0}

        def loss_fn(exs, targets):
            calls["n"] += 1
            if calls["n"] == fail_at:
                raise KeyboardInterrupt("simulated interruption")
            return model.loss(exs, targets)

        return train(model, loss_fn, examples, config, evaluate=lambda: -float(model.theta.detach().sum()), run_dir=path)

    torch.cuda.manual_seed_all(0)
    whole = run(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", fail_at=6)
    torch.cuda.manual_seed_all(123)  # the resumed run must take the generator from the checkpoint, not from here
    resumed = run(tmp_path / "cut")
    assert resumed.resumed_from == 4
    assert torch.equal(resumed.last_state["theta"], whole.last_state["theta"])


def test_a_run_killed_on_the_gpu_resumes_to_the_same_theta(tmp_path, shared_dir, data_dir):
    """tune on CUDA (device auto), killed after its second evaluation, run again: the theta of the uninterrupted
    run; the weights bfloat16 where the GPU computes it, theta and the optimiser state float32."""
    argv = ["tune", "--task", "glue-sst2", "--method", "lora", "--opt", "r=2", "--steps", "60", "--eval-every", "10",
            "--max-test-examples", "8", "--run-name", "r", "--keep-checkpoint", "--no-progress",
            "--backbone", f"{shared_dir}/models/stories260K", "--data-dir", str(data_dir),
            "--backbone-opt", "max_output_length=4"]
    env = {**os.environ}
    subprocess.run([sys.executable, "-c", RUN, *argv, "--out", str(tmp_path / "whole")], check=True, env=env,
                   timeout=600)
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-c", RUN, *argv, "--out", str(cut)], env=env)
    log = cut / "r" / "log.jsonl"
    import time

    deadline = time.time() + 300
    while not (log.exists() and any(json.loads(line).get("step", -1) >= 20
                                    for line in log.read_text().splitlines() if line.strip())):
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    subprocess.run([sys.executable, "-c", RUN, *argv, "--out", str(cut)], check=True, env=env, timeout=600)
    whole_theta = read_tensors(tmp_path / "whole" / "r" / "theta.safetensors")
    cut_theta = read_tensors(cut / "r" / "theta.safetensors")
    for key in whole_theta:
        assert whole_theta[key].dtype == torch.float32
        assert torch.equal(whole_theta[key], cut_theta[key]), key
    config = json.loads((tmp_path / "whole" / "r" / "config.json").read_text())
    if torch.cuda.is_bf16_supported():
        assert config["backbone"]["dtype"] == "bfloat16"
    state = read_tensors(next((tmp_path / "whole" / "r" / "checkpoint").glob("state-*.safetensors")))
    assert "rng.cuda.0" in state  # trained on the GPU, its generator kept
    moments = [t for k, t in state.items() if k.startswith("optim.") and t.is_floating_point() and t.dim() > 0]
    assert moments and {t.dtype for t in moments} == {torch.float32}


def test_prefix_gradients_under_flex_attention_equal_sdpa(shared_dir, data_dir):
    path = f"{shared_dir}/models/stories260K"
    examples = load_task("glue-sst2", data_dir).train[:2] + load_task("web_questions", data_dir).train[:1]
    out = []
    for impl in ("sdpa", "flex_attention"):
        backbone = load_backbone(path, dtype="float32", attn_implementation=impl)
        method = build_method("prefix", backbone, {"n_tokens": 3, "hidden": 8})
        g = torch.Generator().manual_seed(0)
        theta = method.init(g)
        theta = (theta + 0.5 * torch.randn(theta.shape, generator=g)).to(backbone.device).requires_grad_(True)
        with method.bind(theta):
            loss = backbone.loss(backbone.collate(examples, [e.references[0] for e in examples]))
        out.append((loss.detach(), torch.autograd.grad(loss.sum(), theta)[0]))
    torch.testing.assert_close(out[0][0], out[1][0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out[0][1], out[1][1], atol=1e-4, rtol=1e-3)


def test_fastfood_draws_the_same_transform_on_every_device():
    cpu = Fastfood(300, [(40, 50), (3000,)], seed=3)
    gpu = Fastfood(300, [(40, 50), (3000,)], seed=3).to("cuda")
    z = torch.randn(2, 300)
    torch.testing.assert_close(gpu(z.cuda()).cpu(), cpu(z), atol=1e-5, rtol=1e-4)


def test_tasks_trained_in_one_pass_equal_their_separate_runs(shared_dir, data_dir):
    backbone = load_backbone(f"{shared_dir}/models/stories260K", dtype="float32")
    method = build_method("lora", backbone, {"r": 2})
    tasks = [load_task(t, data_dir) for t in ("glue-sst2", "ag_news", "trec")]
    config = TrainConfig(steps=4, batch_size=4, lr=1e-2, progress=False)

    def thetas():
        return [FlatParameters(method.init(torch.Generator().manual_seed(i)), method.layout).to(backbone.device)
                for i in range(len(tasks))]

    alone = thetas()
    for theta, task in zip(alone, tasks):
        def loss_fn(examples, targets, theta=theta):
            with method.bind(theta):
                return backbone.loss(backbone.collate(examples, targets)).mean()

        train(theta, loss_fn, task.train, config, backbone=backbone)
    together = thetas()
    train_many([TrainJob(theta, task.train, config) for theta, task in zip(together, tasks)],
               joint_theta_loss(method, backbone, together), backbone=backbone)
    for a, b in zip(alone, together):
        torch.testing.assert_close(a.theta, b.theta, atol=1e-4, rtol=1e-3)
