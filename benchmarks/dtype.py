"""float32 against bfloat16 frozen weights: the same tune runs (by default the README's main job as it was before
docs/budget.md's defaults: LoRA, 60 steps of 4, dev every 30 steps, test capped at 100) in both dtypes, on several
tasks and data seeds, one after the other in one process. Printed per run: wall time (training and evaluation, the
model already loaded) and dev / test scores in each dtype; then the mean time ratio (bfloat16 over float32) and the
mean and largest score differences.

    python benchmarks/dtype.py                                        # SmolLM2, 3 tasks x 2 data seeds
    python benchmarks/dtype.py --tasks glue-sst2 --data-seeds 100 --steps 10
    python benchmarks/dtype.py --backbone-opt device=cuda             # on a GPU

On a CPU without AVX-512 BF16 or AMX, PyTorch emulates bfloat16 (many times slower than float32). Both dtypes are
asked for by name, so TASKSPACE_FAST_BF16 changes nothing here.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import describe_device, timed
from taskspace.backbones import load_backbone
from taskspace.cli import parse_options
from taskspace.tuning import TuneConfig, tune

DTYPES = ("float32", "bfloat16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="smollm2")
    ap.add_argument("--backbone-opt", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--method", default="lora")
    ap.add_argument("--tasks", nargs="+", default=["ag_news", "glue-sst2", "superglue-copa"])
    ap.add_argument("--data-seeds", type=int, nargs="+", default=[100, 13])
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/crossfit"))
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--eval-every", type=int, default=30)
    ap.add_argument("--max-test-examples", type=int, default=100)
    args = ap.parse_args()
    options = parse_options(args.backbone_opt, None, "--backbone-opt")
    backbones = {d: load_backbone(args.backbone, **{**options, "dtype": d}) for d in DTYPES}
    device = backbones["float32"].device
    print(f"backbone {backbones['float32'].name}, {args.method}, {args.steps} steps of {args.batch_size}, dev every "
          f"{args.eval_every}, test capped at {args.max_test_examples}; device {describe_device(device)}")
    print(f"{'task':<22} {'seed':>4} " + " ".join(f"{d + ' s':>11} {'dev':>6} {'test':>6}" for d in DTYPES))
    ratios, diffs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            for seed in args.data_seeds:
                row = {}
                for dtype in DTYPES:
                    config = TuneConfig(task=task, method=args.method, data_dir=args.data_dir, backbone=args.backbone,
                                        backbone_options={**options, "dtype": dtype}, data_seed=seed,
                                        max_test_examples=args.max_test_examples)
                    config.train = config.train.replace(steps=args.steps, batch_size=args.batch_size,
                                                        eval_every=args.eval_every, progress=False)
                    run = Path(tmp) / f"{task}-{seed}-{dtype}"
                    seconds, result = timed(lambda: tune(config, run, backbone=backbones[dtype]), device)
                    row[dtype] = (seconds, result.scores["dev"], result.scores["test"])
                print(f"{task:<22} {seed:>4} " + " ".join(
                    f"{s:>11.1f} {100 * dev:>6.2f} {100 * test:>6.2f}" for s, dev, test in row.values()), flush=True)
                ratios.append(row["bfloat16"][0] / row["float32"][0])
                diffs.append(100 * (row["bfloat16"][2] - row["float32"][2]))
    print(f"time, bfloat16 / float32: {statistics.mean(ratios):.2f}x (mean of {len(ratios)} runs); test score, "
          f"bfloat16 minus float32: mean {statistics.mean(diffs):+.2f} points, largest "
          f"{max(diffs, key=abs):+.2f}, per run {', '.join(f'{d:+.2f}' for d in diffs)}")


if __name__ == "__main__":
    main()
