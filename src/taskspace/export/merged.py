"""A finished run merged into its backbone's weights: a ``save_pretrained`` model folder (weights as safetensors,
config, tokenizer) that transformers loads with no taskspace and no peft, computing what the run computes.

Merged: LoRA (``W += alpha / r * B A``, on whole projections and on parts of fused ones alike), BitFit (biases
added to the existing ones; on Llama-style models without biases the config's ``attention_bias`` and ``mlp_bias``
are switched on so that the saved model has them) and full fine-tuning (``W += delta``). Refused, with the reason:
prompt and prefix tuning (their virtual tokens are inputs, not weights), adapters (modules the architecture does not
have), and BitFit biases that the architecture cannot hold (T5's projections, RMS norms).

The weights are merged, saved and checked in float32, whatever dtype the run computed in: the run's backbone is
reloaded in float32 from its recorded settings, and a bfloat16 run's delta merged into it (rounding the merged
weights to bfloat16 could lose a small delta). Before anything is kept, the saved folder is loaded back and
its logits on a probe batch are compared with the run's theta bound to the float32 backbone; a difference beyond
float32 tolerance removes the folder and raises. Load the folder with ``dtype=torch.bfloat16`` to compute as a
bfloat16 run did. Beside the model: ``taskspace.json`` and a ``README.md`` model card, the exact input format and
answer format the delta was tuned with (:mod:`taskspace.export.card`).
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, IncompatibleError
from ..predict import Predictor
from .card import export_record, write_export_files
from ..store import file_mode

_REFUSALS = {
    "prompt": "prompt tuning prepends virtual tokens to the input; no weight of the model holds them, so it cannot "
              "be merged (export it with --format peft, or answer with taskspace predict)",
    "prefix": "prefix-tuning adds keys and values to every attention call; no weight of the model holds them, so "
              "it cannot be merged (answer with taskspace predict)",
    "adapter": "adapters add a bottleneck module to every layer, which the base architecture does not have, so "
               "they cannot be merged into its weights",
}


def _modules_by_name(model: nn.Module) -> dict[int, str]:
    return {id(m): name for name, m in model.named_modules()}


def _merge_finetune(p: Predictor, model: nn.Module, theta: torch.Tensor) -> None:
    params = dict(model.named_parameters())
    for s in p.method.layout.slices:
        params[s.name].add_(p.method.layout.view(theta, s.name).to(params[s.name].dtype))


def _merge_lora(p: Predictor, model: nn.Module, theta: torch.Tensor) -> None:
    names = _modules_by_name(p.backbone.model)
    scale = p.method.scale
    for site in p.method.target_sites():
        a = p.method.layout.view(theta, f"{site.name}.lora_A")
        b = p.method.layout.view(theta, f"{site.name}.lora_B")
        delta = scale * (b @ a)  # [out, in]
        weight = model.get_submodule(names[id(site.module)]).weight
        cols = slice(site.out_offset, site.out_offset + site.out_features)
        if isinstance(site.module, nn.Linear):
            weight[cols, :] += delta.to(weight.dtype)
        else:  # GPT-2's Conv1D holds its weight as [in, out]
            weight[:, cols] += delta.T.to(weight.dtype)


def _merge_bitfit(p: Predictor, model: nn.Module, theta: torch.Tensor) -> None:
    names = _modules_by_name(p.backbone.model)
    entries = [(slice_name, model.get_submodule(names[id(module)]), p.method.layout.view(theta, slice_name))
               for slice_name, module, _ in p.method.bias_sites()]
    missing = [(n, m) for n, m, delta in entries if getattr(m, "bias", None) is None and bool(delta.any())]
    if missing:
        linear = [m for _, m in missing if isinstance(m, nn.Linear)]
        others = [(n, m) for n, m in missing if not isinstance(m, nn.Linear)]
        if others:
            n, m = others[0]
            raise ConfigError(f"export --format merged: BitFit tuned a bias of {n} ({type(m).__name__}), which has "
                              "no bias parameter to hold it; tune with --opt norms=false to get a mergeable BitFit")
        config = model.config
        if not (hasattr(config, "attention_bias") and hasattr(config, "mlp_bias")):
            raise ConfigError(f"export --format merged: BitFit added biases to {type(linear[0]).__name__} "
                              f"projections that {config.model_type} models have without bias, and its config "
                              "cannot declare them")
        # Llama-style models: the config switches biases on for every attention and MLP projection
        config.attention_bias = config.mlp_bias = True
        for layer_module in model.modules():
            for attr in ("self_attn", "mlp"):
                part = getattr(layer_module, attr, None)
                if part is None:
                    continue
                for linear_module in part.modules():
                    if isinstance(linear_module, nn.Linear) and linear_module.bias is None:
                        linear_module.bias = nn.Parameter(torch.zeros(linear_module.out_features,
                                                                      dtype=linear_module.weight.dtype,
                                                                      device=linear_module.weight.device))
    for name, module, delta in entries:
        if module.bias is None:  # an untouched (zero) bias of a module without one
            continue
        module.bias.data += delta.to(module.bias.dtype)


_MERGERS = {"finetune": _merge_finetune, "lora": _merge_lora, "bitfit": _merge_bitfit}


def _probe(p: Predictor) -> dict[str, torch.Tensor]:
    tok = p.backbone.tokenizer
    texts = [f"[{p.task}] a short probe sentence", f"[{p.task}] another, longer probe sentence to compare"]
    if tok.pad_token is None:  # a tokenizer that cannot pad (GPT-2's): one row
        texts = texts[1:]
    batch = tok(texts, return_tensors="pt", padding=len(texts) > 1)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if p.backbone.family == "seq2seq":
        inputs["decoder_input_ids"] = batch["input_ids"][:, :4]
    return {k: v.to(p.backbone.device) for k, v in inputs.items()}


def _outputs(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(**inputs)
    return out.logits if hasattr(out, "logits") and out.logits is not None else out.last_hidden_state


def export_merged(run_dir: str | Path | None, out_dir: str | Path, *, predictor: Predictor | None = None) -> Path:
    """Write the run's backbone with its delta merged into the weights as a ``save_pretrained`` folder, with
    ``taskspace.json`` and a ``README.md`` model card (:mod:`.card`)."""
    import transformers

    p = predictor if predictor is not None else Predictor.load(run_dir, dtype="float32")
    name = p.method.name
    if name not in _MERGERS:
        raise ConfigError(f"export --format merged: {name} cannot be merged: {_REFUSALS.get(name, 'no merger')}")
    if p.backbone.dtype != torch.float32:
        raise ConfigError(f"export --format merged merges in float32, and this predictor's backbone computes in "
                          f"{str(p.backbone.dtype).removeprefix('torch.')}: pass the run directory, or a predictor "
                          "loaded with Predictor.load(run, dtype='float32')")
    record = export_record(p, run_dir, "merged")
    model = copy.deepcopy(p.backbone.model)
    theta = p.theta.detach().to(p.backbone.device).float()
    with torch.no_grad():
        _MERGERS[name](p, model, theta)
    # taskspace routes attention through its own function; the saved model uses transformers' default
    for cfg in {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}.values():
        cfg._attn_implementation = None
    out = Path(out_dir)
    created = not out.exists()
    before = set(out.rglob("*")) if not created else set()
    model.save_pretrained(str(out), safe_serialization=True)
    p.backbone.tokenizer.save_pretrained(str(out))
    for path in out.rglob("*"):  # safetensors writes 0600: the user's mode instead, as every file taskspace writes
        if path.is_file() and path not in before:
            os.chmod(path, file_mode())
    auto = getattr(transformers, type(p.backbone).auto_class)
    try:
        reloaded = auto.from_pretrained(str(out), local_files_only=True, dtype=torch.float32).to(p.backbone.device)
        inputs = _probe(p)
        with torch.no_grad():
            with p.method.bind(p.theta):
                ours = _outputs(p.backbone.model, inputs)
            theirs = _outputs(reloaded.eval(), inputs)
        tol = 1e-4
        if not torch.allclose(theirs.float(), ours.float(), rtol=tol, atol=tol * 10):
            diff = (theirs.float() - ours.float()).abs().max().item()
            raise IncompatibleError(f"export --format merged: the saved model's outputs differ from the run's by "
                                    f"{diff:.3g}; nothing was kept")
        write_export_files(out, record)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return out
