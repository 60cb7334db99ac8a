"""Training-step time of every taskspace delta method against peft and against the frozen backbone.

For each method, one training step (forward, loss, backward, optimiser step) on the same backbone and batch is
timed for:

- taskspace: ``with method.bind(theta): backbone.loss(batch)``, the library's own path;
- the reference implementation: peft for prompt, prefix and LoRA; for BitFit the backbone's own bias parameters
  made trainable (BitFit done natively); for full fine-tuning all parameters trainable (plain PyTorch); adapters
  have no reference (peft has no bottleneck adapters);
- the frozen backbone: the same loss with nothing trained, back-propagated to the input embeddings (the
  activation backward pass that every delta method needs, without any parameter gradients). For prompt tuning
  the frozen backbone gets as many extra (zero) input tokens as the prompt has: a prompt makes every input
  longer, which costs the same in any implementation.

The reference and frozen timings use the same loss function as taskspace (for the encoder: mean-pooled
embeddings, scaled cosine to the options' frozen embeddings, cross-entropy; for causal models: next-token loss on
the answer tokens). Every implementation uses the same optimiser (taskspace's AdamW). Timings interleave the
implementations step by step and report medians; only ratios measured in the same run are meaningful. Usage:

    python benchmarks/step_time.py --backbone minilm     # all-MiniLM-L6-v2 (encoder), ag_news, batch 8
    python benchmarks/step_time.py --backbone ../shared/models/stories260K --task glue-sst2
    python benchmarks/step_time.py --steps 10 --warmup 2 --methods prompt prefix lora   # SmolLM2 (the default)
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from common import describe_device, timed
from taskspace.backbones import load_backbone
from taskspace.cli import parse_options
from taskspace.deltas import FlatParameters, build_method
from taskspace.optim import make_optimizer
from taskspace.tasks import load_task

OPTIONS = {
    "prompt": {"n_tokens": 20},
    "prefix": {"n_tokens": 20, "hidden": 64},
    "lora": {"r": 8, "alpha": 16, "targets": ("q", "v")},
    "adapter": {"r": 16},
    "bitfit": {},
    "finetune": {},
}


# ----------------------------------------------------------------------------------------------------------------
# The loss, written once for a model that maps (input_ids | inputs_embeds, attention_mask) to hidden states / logits


def encoder_loss(backbone, batch, run, extra_prefix: int = 0):
    """The encoder backbone's loss computed on ``run(ids, mask) -> last_hidden_state``."""
    hidden = run(batch["input_ids"], batch["attention_mask"])[:, extra_prefix:]
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    logits = torch.stack([
        backbone.similarity_scale * (backbone.option_embeddings(e.options) @ pooled[i])
        for i, e in enumerate(batch.examples)
    ])
    return F.cross_entropy(logits, batch["gold"])


def causal_loss(batch, run, extra_prefix: int = 0):
    """Next-token loss on the answer tokens, with the LM head run on the positions that predict them only (as
    taskspace does; ``logits_to_keep`` gives every implementation the same head cost)."""
    start = int(batch["answer_start"])
    width = batch["input_ids"].shape[1] - start
    logits = run(batch["input_ids"], batch["attention_mask"], keep=width + 1)[:, :-1]
    labels = batch["labels"][:, start:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


def make_reference(name: str, backbone, batch):
    """(step function, trainable parameters) of the reference implementation, or None."""
    import copy

    import peft

    family = backbone.family
    model = copy.deepcopy(backbone.model)
    for cfg in {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}.values():
        cfg._attn_implementation = "sdpa"
    model.train()
    task_type = "FEATURE_EXTRACTION" if family == "encoder" else "CAUSAL_LM"
    key = "last_hidden_state" if family == "encoder" else "logits"
    extra = 0
    if name == "lora":
        targets = ["query", "value"] if family == "encoder" else ["q_proj", "v_proj"]
        model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules=targets, lora_dropout=0.0))
    elif name == "prompt":
        model = peft.get_peft_model(model, peft.PromptTuningConfig(task_type=task_type, num_virtual_tokens=20))
        extra = 20
    elif name == "prefix":
        model = peft.get_peft_model(model, peft.PrefixTuningConfig(
            task_type=task_type, num_virtual_tokens=20, prefix_projection=True, encoder_hidden_size=64))
    elif name == "bitfit":
        model.requires_grad_(False)
        for n, p in model.named_parameters():
            if n.endswith(".bias"):
                p.requires_grad_(True)
    elif name == "finetune":
        model.requires_grad_(True)
    else:
        return None
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:  # e.g. BitFit on a model without biases (Llama): nothing native to compare with
        return None

    def run(ids, mask, keep=None):
        extra_args = {} if keep is None else {"logits_to_keep": keep}
        return model(input_ids=ids, attention_mask=mask, **extra_args)[key]

    if family == "encoder":
        return (lambda: encoder_loss(backbone, batch, run, extra)), params
    return (lambda: causal_loss(batch, run, extra)), params


def frozen_step(backbone, batch, extra_tokens: int = 0):
    """The frozen backbone's loss, differentiated with respect to the input embeddings only.

    ``extra_tokens`` prepends that many (zero) embeddings, so that prompt tuning, which lengthens every input,
    is compared with the frozen backbone computing on as many tokens.
    """
    model = backbone.model
    table = model.get_input_embeddings()

    def run(ids, mask, keep=None):
        embeds = table(ids)
        if extra_tokens:
            embeds = torch.cat([embeds.new_zeros(embeds.shape[0], extra_tokens, embeds.shape[-1]), embeds], 1)
            mask = torch.cat([mask.new_ones(mask.shape[0], extra_tokens), mask], 1)
        extra_args = {} if keep is None else {"logits_to_keep": keep}
        out = model(inputs_embeds=embeds.detach().requires_grad_(True), attention_mask=mask, **extra_args)
        return out.last_hidden_state if backbone.family == "encoder" else out.logits

    if backbone.family == "encoder":
        return lambda: encoder_loss(backbone, batch, run, extra_tokens)
    return lambda: causal_loss(batch, run, extra_tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="smollm2")
    ap.add_argument("--backbone-opt", action="append", default=[], metavar="KEY=VALUE", help="e.g. dtype=float32")
    ap.add_argument("--task", default="ag_news")
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/crossfit"))
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per implementation")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--methods", nargs="*", default=list(OPTIONS))
    args = ap.parse_args()

    torch.manual_seed(0)
    backbone = load_backbone(args.backbone, **parse_options(args.backbone_opt, None, "--backbone-opt"))
    task = load_task(args.task, args.data_dir)
    batch = backbone.collate(task.train[: args.batch_size])
    backbone.train()
    with torch.no_grad():
        backbone.loss(batch)  # fills the encoder's option-embedding cache for every implementation
    print(f"backbone {backbone.name} ({backbone.family}, {backbone.num_parameters():,} parameters, "
          f"{backbone.describe()['dtype']}), task "
          f"{args.task}, batch {args.batch_size}, median of {args.steps} steps")
    print(f"device {describe_device(backbone.device)}")
    print(f"{'method':>9} {'D':>11} {'taskspace ms':>13} {'reference ms':>13} {'frozen ms':>10} "
          f"{'vs reference':>13} {'vs frozen':>10}  reference")

    for name in args.methods:
        extra = OPTIONS[name]["n_tokens"] if name == "prompt" else 0
        frozen_fn = frozen_step(backbone, batch, extra)
        method = build_method(name, backbone, OPTIONS[name])
        theta = FlatParameters(method.init(torch.Generator().manual_seed(0)), method.layout)
        ours_opt = make_optimizer("adamw", theta.parameters(), lr=1e-4)

        def ours():
            ours_opt.zero_grad(set_to_none=True)
            with method.bind(theta):
                loss = backbone.loss(batch).mean()
            loss.backward()
            ours_opt.step()

        def frozen():
            frozen_fn().backward()

        ref = make_reference(name, backbone, batch)
        runners = {"ours": ours, "frozen": frozen}
        if ref is not None:
            ref_loss, ref_params = ref
            ref_opt = make_optimizer("adamw", ref_params, lr=1e-4)

            def reference():
                ref_opt.zero_grad(set_to_none=True)
                ref_loss().backward()
                ref_opt.step()

            runners["reference"] = reference
        times: dict[str, list[float]] = {k: [] for k in runners}
        for i in range(args.warmup + args.steps):
            for key, fn in runners.items():  # interleaved, so drifts of the machine hit all alike
                t, _ = timed(fn, backbone.device)
                if i >= args.warmup:
                    times[key].append(t)
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        ref_ms = med.get("reference")
        ref_name = {"prompt": "peft", "prefix": "peft", "lora": "peft", "bitfit": "native biases",
                    "finetune": "plain PyTorch"}.get(name, "none") if ref is not None else "none"
        ratio_ref = f"{med['ours'] / ref_ms:13.2f}" if ref_ms else f"{'n/a':>13}"
        ref_col = f"{ref_ms:13.1f}" if ref_ms else f"{'n/a':>13}"
        print(f"{name:>9} {method.size:>11,} {med['ours']:13.1f} {ref_col} {med['frozen']:10.1f} "
              f"{ratio_ref} {med['ours'] / med['frozen']:10.2f}  {ref_name}")


if __name__ == "__main__":
    main()
