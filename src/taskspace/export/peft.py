"""A finished run's theta as a PEFT adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``), the
format ``peft.PeftModel.from_pretrained(base, folder)``, transformers' ``load_adapter`` and serving engines read.

Exported exactly: LoRA on whole ``nn.Linear`` projections (taskspace's ``lora_A [r, in]`` / ``lora_B [out, r]``
are peft's weights as they are, scale ``alpha / r`` the same), and prompt tuning on decoder-only backbones (the
soft tokens are peft's ``prompt_embeddings``, prepended before the input as taskspace does). Everything else is
refused with the reason, before anything is written: a LoRA site on part of a fused projection (GPT-2's
``c_attn``) has no peft LoRA equivalent without a block-structured B; prefix-tuning's keys and values carry no
positions here, unlike peft's past-key-value prefix; adapters, BitFit and fine-tuning have no export yet.
peft itself is not needed to export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..errors import ConfigError
from ..predict import Predictor
from ..store import write_json, write_tensors

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
_TASK_TYPES = {"causal": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM", "encoder": "FEATURE_EXTRACTION"}


def _module_names(model: torch.nn.Module) -> dict[int, str]:
    return {id(m): name for name, m in model.named_modules()}


def _lora(p: Predictor) -> tuple[dict, dict[str, torch.Tensor]]:
    method, theta = p.method, p.theta.detach().cpu()
    names = _module_names(p.backbone.model)
    tensors, targets = {}, []
    for site in method.target_sites():
        if not site.covers_output or not isinstance(site.module, torch.nn.Linear):
            raise ConfigError(f"export --format peft: LoRA site {site.name} adapts part of a fused projection "
                              f"({type(site.module).__name__}, output columns {site.out_offset}..."
                              f"{site.out_offset + site.out_features}); a peft LoRA adapts a whole module")
        name = names[id(site.module)]
        targets.append(name)
        for part in ("lora_A", "lora_B"):
            tensors[f"base_model.model.{name}.{part}.weight"] = method.layout.view(theta, f"{site.name}.{part}").clone()
    config = {"peft_type": "LORA", "r": method.config.r, "lora_alpha": method.config.alpha, "target_modules": targets,
              "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "use_rslora": False}
    return config, tensors


def _prompt(p: Predictor) -> tuple[dict, dict[str, torch.Tensor]]:
    if p.backbone.family != "causal":
        raise ConfigError(f"export --format peft: prompt tuning on a {p.backbone.family} backbone is not exported yet "
                          "(peft places its prompts differently there, and no parity test covers it)")
    prompt = p.method.layout.view(p.theta.detach().cpu(), "prompt").clone()
    config = {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": prompt.shape[0], "token_dim": prompt.shape[1],
              "num_transformer_submodules": 1, "prompt_tuning_init": "RANDOM"}
    return config, {"prompt_embeddings": prompt}


_EXPORTERS: dict[str, Callable[[Predictor], tuple[dict, dict[str, torch.Tensor]]]] = {"lora": _lora,
                                                                                      "prompt": _prompt}
_REFUSALS = {
    "prefix": "taskspace's prefix keys and values carry no positions and never shift the input's; peft's "
              "past-key-value prefix does, so the two compute differently",
    "adapter": "peft has no bottleneck adapter of this form (the adapters library's format is not exported yet)",
    "bitfit": "not exported yet (peft's BEFT format has no parity test here)",
    "finetune": "a full fine-tuning is a model, not an adapter (a merged export is not implemented yet)",
}


def export_peft(run_dir: str | Path, out_dir: str | Path, *, predictor: Predictor | None = None) -> Path:
    """Write the run's theta as a PEFT adapter folder in ``out_dir``; returns it."""
    p = predictor if predictor is not None else Predictor.load(run_dir)
    name = p.method.name
    if name not in _EXPORTERS:
        raise ConfigError(f"export --format peft: {name} cannot be exported: {_REFUSALS.get(name, 'no exporter')}")
    config, tensors = _EXPORTERS[name](p)
    config.update(task_type=_TASK_TYPES[p.backbone.family], base_model_name_or_path=p.backbone.name,
                  inference_mode=True)
    out = Path(out_dir)
    write_tensors(out / WEIGHTS, tensors, {"format": "pt"})
    write_json(out / CONFIG, config)
    return out
