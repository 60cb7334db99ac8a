"""A finished run's theta as a PEFT adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``), the
format ``peft.PeftModel.from_pretrained(base, folder)``, transformers' ``load_adapter`` and serving engines read.

Exported exactly: LoRA (taskspace's ``lora_A [r, in]`` / ``lora_B [out, r]`` are peft's weights as they are,
scale ``alpha / r`` the same; a module adapted in parts, GPT-2's fused ``c_attn``, becomes one LoRA with a
block-structured B, see :func:`_lora`), prompt tuning on decoder-only backbones (the soft tokens are peft's
``prompt_embeddings``, prepended before the input as taskspace does), and BitFit as peft's BEFT (a bias
``[1, out]`` added to each ``nn.Linear`` output, as taskspace adds it, also where the layer has no bias of its
own). Everything else is refused with the reason, before anything is written: BitFit norm biases that were tuned
(BEFT adapts linear layers only); prefix-tuning, whose keys and values carry no positions here, unlike peft's
past-key-value prefix; adapters; fine-tuning, a model rather than an adapter (see :mod:`taskspace.export.merged`).
peft itself is not needed to export. Beside the adapter: ``taskspace.json`` and a ``README.md`` model card, the
exact input format and answer format the delta was tuned with (:mod:`taskspace.export.card`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import torch

from ..errors import ConfigError
from ..predict import Predictor
from ..store import write_json, write_tensors
from .card import export_record, write_export_files

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
_TASK_TYPES = {"causal": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM", "encoder": "FEATURE_EXTRACTION"}


def _module_names(model: torch.nn.Module) -> dict[int, str]:
    return {id(m): name for name, m in model.named_modules()}


def _lora(p: Predictor) -> tuple[dict, dict[str, torch.Tensor]]:
    """LoRA per module. A module adapted in parts (GPT-2's fused ``c_attn``: q, k, v side by side) becomes one
    LoRA of rank ``n r`` over the whole module: A stacks the parts' A, B is block-structured (part i's B in its
    output rows and rank columns i r .. (i+1) r, zeros elsewhere), and alpha is ``n alpha`` so that
    ``alpha' / r' = alpha / r``: the same update, exactly. A single part (``targets=k``) keeps rank r, with zero
    rows in B outside its output columns."""
    method, theta = p.method, p.theta.detach().cpu()
    names = _module_names(p.backbone.model)
    r, alpha = method.config.r, method.config.alpha
    groups: dict[int, list] = {}
    for site in method.target_sites():
        groups.setdefault(id(site.module), []).append(site)
    tensors, targets, rank_pattern, alpha_pattern, conv = {}, [], {}, {}, set()
    for sites in groups.values():
        module = sites[0].module
        name = names[id(module)]
        targets.append(name)
        conv.add(not isinstance(module, torch.nn.Linear))
        a_parts = [method.layout.view(theta, f"{s.name}.lora_A") for s in sites]
        b_parts = [method.layout.view(theta, f"{s.name}.lora_B") for s in sites]
        if len(sites) == 1 and sites[0].covers_output:
            a, b = a_parts[0].clone(), b_parts[0].clone()
        else:
            a = torch.cat(a_parts)
            b = torch.zeros(sites[0].module_out_features, r * len(sites), dtype=a.dtype)
            for i, (site, part) in enumerate(zip(sites, b_parts)):
                b[site.out_offset:site.out_offset + site.out_features, i * r:(i + 1) * r] = part
            if len(sites) > 1:
                rank_pattern[name], alpha_pattern[name] = r * len(sites), alpha * len(sites)
        tensors[f"base_model.model.{name}.lora_A.weight"] = a
        tensors[f"base_model.model.{name}.lora_B.weight"] = b
    if len(conv) > 1:
        raise ConfigError("export --format peft: LoRA adapts both nn.Linear and Conv1D modules, which one peft "
                          "LoRA config (fan_in_fan_out) cannot describe")
    config = {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": targets, "lora_dropout": 0.0,
              "bias": "none", "fan_in_fan_out": conv == {True}, "use_rslora": False,
              # peft matches these keys as regular expressions against module names
              "rank_pattern": {re.escape(k): v for k, v in rank_pattern.items()},
              "alpha_pattern": {re.escape(k): v for k, v in alpha_pattern.items()}}
    return config, tensors


def _prompt(p: Predictor) -> tuple[dict, dict[str, torch.Tensor]]:
    if p.backbone.family != "causal":
        raise ConfigError(f"export --format peft: prompt tuning on a {p.backbone.family} backbone is not exported yet "
                          "(peft places its prompts differently there, and no parity test covers it)")
    prompt = p.method.layout.view(p.theta.detach().cpu(), "prompt").clone()
    config = {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": prompt.shape[0], "token_dim": prompt.shape[1],
              "num_transformer_submodules": 1, "prompt_tuning_init": "RANDOM"}
    return config, {"prompt_embeddings": prompt}


def _bitfit(p: Predictor) -> tuple[dict, dict[str, torch.Tensor]]:
    theta = p.theta.detach().cpu()
    names = _module_names(p.backbone.model)
    tensors, targets = {}, []
    for slice_name, module, _ in p.method.bias_sites():
        delta = p.method.layout.view(theta, slice_name)
        if not isinstance(module, torch.nn.Linear):
            if not bool(delta.any()):
                continue  # an untouched bias changes nothing: nothing to export
            raise ConfigError(f"export --format peft: BitFit tuned the bias of {slice_name} ({type(module).__name__}); "
                              "peft's BEFT adds biases to nn.Linear layers only (tune with --opt norms=false, or "
                              "export --format merged)")
        name = names[id(module)]
        targets.append(name)
        tensors[f"base_model.model.{name}.beft_bias"] = delta.reshape(1, -1).clone()
    config = {"peft_type": "BEFT", "target_modules": targets, "init_weights": True}
    return config, tensors


_EXPORTERS: dict[str, Callable[[Predictor], tuple[dict, dict[str, torch.Tensor]]]] = {"lora": _lora,
                                                                                      "prompt": _prompt,
                                                                                      "bitfit": _bitfit}
_REFUSALS = {
    "prefix": "taskspace's prefix keys and values carry no positions and never shift the input's; peft's "
              "past-key-value prefix does, so the two compute differently",
    "adapter": "peft has no bottleneck adapter, and no parity test against the adapters library's bottleneck "
               "format exists here (that library pins transformers below 5), so nothing is written that might "
               "compute something else",
    "finetune": "a full fine-tuning is a model, not an adapter: export it with --format merged",
}


def export_peft(run_dir: str | Path | None, out_dir: str | Path, *, predictor: Predictor | None = None) -> Path:
    """Write the run's theta as a PEFT adapter folder in ``out_dir``, with ``taskspace.json`` and a ``README.md``
    model card (the input and answer format, the task, the scores: :mod:`.card`); returns it."""
    p = predictor if predictor is not None else Predictor.load(run_dir)
    name = p.method.name
    if name not in _EXPORTERS:
        raise ConfigError(f"export --format peft: {name} cannot be exported: {_REFUSALS.get(name, 'no exporter')}")
    config, tensors = _EXPORTERS[name](p)
    config.update(task_type=_TASK_TYPES[p.backbone.family], base_model_name_or_path=p.backbone.name,
                  inference_mode=True)
    record = export_record(p, run_dir, "peft")
    out = Path(out_dir)
    write_tensors(out / WEIGHTS, tensors, {"format": "pt"})
    write_json(out / CONFIG, config)
    write_export_files(out, record)
    return out
