"""Many tasks in one pass: K tasks' thetas trained together (``bank --batched K``, ``taskspace.train.train_many``:
one forward and backward pass per step for all their batches) against the same K runs one after the other, the
same steps and batches, for K in 1, 4, 8, 16. Printed as throughput ratios (steps per second of the batched pass
over the sequential runs), measured in one run, with the device named. No evaluation is timed.

Beside it, the memory autograd holds for the backward pass of one joint step (the tensors the forward saves,
each storage counted once), with the K thetas bound as distinct rows (``bind(theta, rows=...)``, what the batched
pass does: LoRA computes each theta once over its examples) and gathered per example (``bind(theta[rows])``: a
copy of every theta's A and B per example), and their ratio.

    python benchmarks/multitask.py                                   # SmolLM2, LoRA, 10 steps of 4 per task
    python benchmarks/multitask.py --backbone ../shared/models/stories260K --ks 1 4 8 16 32
    python benchmarks/multitask.py --backbone-opt device=cuda
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from common import describe_device, timed
from taskspace.backbones import load_backbone
from taskspace.cli import parse_options
from taskspace.deltas import FlatParameters, build_method
from taskspace.runs import joint_theta_loss
from taskspace.tasks import load_task
from taskspace.train import TrainConfig, TrainJob, train, train_many

TASKS = ["glue-sst2", "ag_news", "trec", "emotion", "rotten_tomatoes", "tweet_eval-sentiment", "sms_spam",
         "glue-mrpc", "paws", "scitail", "emo", "ethos-race", "glue-rte", "lama-trex", "lama-google_re",
         "lama-conceptnet"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="smollm2")
    ap.add_argument("--backbone-opt", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--method", default="lora")
    ap.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="method option")
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/crossfit"))
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args()
    if max(args.ks) > len(TASKS):
        raise SystemExit(f"--ks: at most {len(TASKS)} tasks")
    backbone = load_backbone(args.backbone, **parse_options(args.backbone_opt, None, "--backbone-opt"))
    method = build_method(args.method, backbone, parse_options(args.opt, None, "--opt"))
    tasks = [load_task(t, args.data_dir) for t in TASKS[: max(args.ks)]]
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=1e-3, progress=False)
    print(f"backbone {backbone.name} ({backbone.describe()['dtype']}), {args.method} (D = {method.size:,}), "
          f"{args.steps} steps of {args.batch_size} examples per task, no evaluation")
    print(f"device {describe_device(backbone.device)}")
    print(f"{'K':>3} {'sequential s':>13} {'batched s':>10} {'throughput':>11} {'saved MB, rows':>15} "
          f"{'gathered':>9} {'ratio':>6}")

    def thetas(k: int) -> list[FlatParameters]:
        return [FlatParameters(method.init(torch.Generator().manual_seed(i)), method.layout).to(backbone.device)
                for i in range(k)]

    def sequential(k: int) -> None:
        for theta, task in zip(thetas(k), tasks):
            def loss_fn(examples, targets, theta=theta):
                with method.bind(theta):
                    return backbone.loss(backbone.collate(examples, targets)).mean()

            train(theta, loss_fn, task.train, config, backbone=backbone)

    def batched(k: int) -> None:
        trainables = thetas(k)
        train_many([TrainJob(theta, task.train, config) for theta, task in zip(trainables, tasks)],
                   joint_theta_loss(method, backbone, trainables), backbone=backbone)

    def saved_mb(k: int) -> tuple[float, float]:
        """MB autograd saves in one joint step of k tasks: thetas bound as rows, and gathered per example."""
        examples = [e for task in tasks[:k] for e in task.train[: args.batch_size]]
        rows = torch.tensor([i for i, task in enumerate(tasks[:k]) for _ in task.train[: args.batch_size]],
                            device=backbone.device)
        theta = torch.stack([method.init(torch.Generator().manual_seed(i)) for i in range(k)])
        theta = theta.to(backbone.device).requires_grad_(True)
        batch = backbone.collate(examples)
        out = []
        for bind in (lambda: method.bind(theta, rows=rows), lambda: method.bind(theta[rows])):
            storages: dict[int, int] = {}

            def pack(t: torch.Tensor) -> torch.Tensor:
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), bind():
                loss = backbone.loss(batch).mean()
            loss.backward()
            out.append(sum(storages.values()) / 2**20)
        return out[0], out[1]

    sequential(1)  # warm-up
    for k in args.ks:
        seq_s, _ = timed(lambda: sequential(k), backbone.device)
        bat_s, _ = timed(lambda: batched(k), backbone.device)
        rows_mb, gathered_mb = saved_mb(k)
        print(f"{k:>3} {seq_s:13.1f} {bat_s:10.1f} {seq_s / bat_s:10.2f}x {rows_mb:15.1f} {gathered_mb:9.1f} "
              f"{gathered_mb / rows_mb:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
