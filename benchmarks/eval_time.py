"""Evaluation time of a causal backbone: taskspace's paths against the naive ones, with the same outputs asserted.

- Option scoring (``decode=rank``): taskspace encodes each input once and scores every option from a copy of its
  KV cache, running the LM head only where a logit is needed; the naive path re-encodes the whole input once per
  option (``CausalBackbone.option_scores_reencoded``). The option scores must agree (to float tolerance) and pick
  the same options.
- Generation (``decode=generate``): taskspace drops a row from the batch once it has produced EOS; the naive path
  keeps every row in the batch until the last one stops (what a fixed-batch greedy loop does). The generated
  texts must be identical.
- Settled generation (``evaluate(..., settle=True)``, used wherever only a score is kept): on tasks scored by EM
  or ACC, an answer stops once no continuation can change its score (:mod:`taskspace.tasks.settled`), against
  generation to EOS or ``max_output_length``; frozen model and perturbed LoRA. The scores must be identical.

Both are timed interleaved on the same batches (medians of ``--repeats``); only ratios measured in the same run
are meaningful. Usage:

    python benchmarks/eval_time.py                          # SmolLM2, ag_news (4 options), 32 test examples
    python benchmarks/eval_time.py --backbone ../shared/models/stories260K --task ag_news
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from common import describe_device, timed
from taskspace.backbones import load_backbone
from taskspace.cli import parse_options
from taskspace.deltas import build_method
from taskspace.evaluation import evaluate
from taskspace.tasks import load_task


def _median_ms(fn, repeats: int, device) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        seconds, out = timed(fn, device)
        times.append(seconds)
    return statistics.median(times) * 1000, out


def _generate_keeping_every_row(backbone, batch) -> list[str]:
    """Greedy generation with the batch kept whole until every row has stopped (finished rows are padded)."""
    n = len(batch)
    cache, mask, last, logits = backbone._prefill([backbone._prompt_ids(e) for e in batch.examples])
    done = torch.zeros(n, dtype=torch.bool)
    tokens: list[list[int]] = [[] for _ in range(n)]
    for step in range(backbone.max_output_length):
        nxt = logits.argmax(-1)
        for row in range(n):
            if not done[row]:
                tokens[row].append(int(nxt[row]))
        done |= nxt == backbone.eos_id
        if step == backbone.max_output_length - 1 or bool(done.all()):
            break
        nxt = nxt.masked_fill(done, backbone.pad_id)
        mask = torch.cat([mask, mask.new_ones(n, 1)], dim=1)
        last = last + 1
        out = backbone.model(input_ids=nxt[:, None], attention_mask=mask, position_ids=last[:, None],
                             past_key_values=cache, use_cache=True)
        logits = out.logits[:, -1]
    return [s.strip() for s in backbone.tokenizer.batch_decode(tokens, skip_special_tokens=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="smollm2")
    ap.add_argument("--backbone-opt", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--task", default="ag_news", help="a task with options (default: ag_news, 4 options)")
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/crossfit"))
    ap.add_argument("--examples", type=int, default=32, help="test examples, one batch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--settle-tasks", nargs="*", default=["glue-sst2", "lama-trex"],
                    help="tasks scored by EM or ACC for the settled-generation timing (their test examples)")
    ap.add_argument("--lora-seed", type=int, default=0,
                    help="generation is timed under a randomly perturbed LoRA so that rows stop at different steps")
    args = ap.parse_args()

    backbone = load_backbone(args.backbone, **parse_options(args.backbone_opt, None, "--backbone-opt"))
    if backbone.family != "causal":
        raise SystemExit(f"eval_time.py times causal backbones; {backbone.name} is {backbone.family}")
    task = load_task(args.task, args.data_dir)
    examples = task.test[: args.examples]
    batch = backbone.collate(examples)
    options = {len(e.options) for e in examples}
    print(f"backbone {backbone.name} ({backbone.describe()['dtype']}), task {args.task} ({sorted(options)} options), "
          f"{len(examples)} examples in one batch, median of {args.repeats}")
    print(f"device {describe_device(backbone.device)}")

    with torch.no_grad():
        fast_ms, fast = _median_ms(lambda: backbone.option_scores(batch), args.repeats, backbone.device)
        slow_ms, slow = _median_ms(lambda: backbone.option_scores_reencoded(batch), args.repeats, backbone.device)
    worst = max(float((a - b).abs().max()) for a, b in zip(fast, slow))
    same_choice = all(int(a.argmax()) == int(b.argmax()) for a, b in zip(fast, slow))
    assert worst < 1e-3 and same_choice, f"option scores differ (max abs {worst:.2e}, same choices {same_choice})"
    print(f"option scores   taskspace {fast_ms:9.1f} ms   re-encoded per option {slow_ms:9.1f} ms   "
          f"speed-up {slow_ms / fast_ms:5.2f}x   (max |diff| {worst:.1e}, same choices)")

    # Generation: a perturbed LoRA makes the rows' answers (and EOS steps) differ, as after tuning.
    lora = build_method("lora", backbone, {"r": 8})
    g = torch.Generator().manual_seed(args.lora_seed)
    theta = lora.init(g) + 0.02 * torch.randn(lora.size, generator=g)
    with torch.no_grad(), lora.bind(theta):
        fast_ms, fast = _median_ms(lambda: backbone.generate(batch), args.repeats, backbone.device)
        slow_ms, slow = _median_ms(lambda: _generate_keeping_every_row(backbone, batch), args.repeats, backbone.device)
    assert fast == slow, "generated texts differ"
    lengths = [len(backbone.tokenizer(t, add_special_tokens=False).input_ids) for t in fast]
    print(f"generation      taskspace {fast_ms:9.1f} ms   every row to the end  {slow_ms:9.1f} ms   "
          f"speed-up {slow_ms / fast_ms:5.2f}x   (answers of {min(lengths)}-{max(lengths)} tokens, identical)")

    for name in args.settle_tasks:
        settle_task = load_task(name, args.data_dir)
        test = settle_task.test[: args.examples]
        for label, bound in (("frozen", {}), ("perturbed LoRA", {"method": lora, "theta": theta})):
            def run(settle, bound=bound):
                return evaluate(backbone, test, settle_task.metric, batch_size=len(test), settle=settle, **bound)[0]

            fast_ms, fast = _median_ms(lambda: run(True), args.repeats, backbone.device)
            slow_ms, slow = _median_ms(lambda: run(False), args.repeats, backbone.device)
            assert fast == slow, f"{name}: settled score {fast} differs from {slow}"
            print(f"settled {name:12s} {label:15s} {fast_ms:9.1f} ms   to EOS / max length {slow_ms:9.1f} ms   "
                  f"speed-up {slow_ms / fast_ms:5.2f}x   ({settle_task.metric} {100 * fast:.1f}, identical)")


if __name__ == "__main__":
    main()
