"""The papers' settings as named presets, one flag away on every stage: ``--preset ipt-paper`` / ``udt-paper``.

A preset holds values of the library configs, per stage: ``tuning`` (the options, learning rate and training
settings of the methods it names, for ``tune`` and ``bank``), ``fit-subspace`` (per finder) and
``subspace-tune``; nested dicts for nested configs. It is laid over the library's defaults, and options typed on the command line
override it. The values are the papers' (IPT §IV-A on BART-base; UDT §4 and appendices A.2-A.4 on T5-base).
Where a paper grid-searched, the preset takes one value of its grid and says so here; where a paper states
nothing, the library's default stays (those gaps are listed in docs/subspaces.md). The CPU recipes shrink steps
and tasks, nothing else.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError

#: Prompt tuning as IPT runs it: n = 100 tokens from N(0, 0.02), AdamW with linear decay and clipping, batch 8,
#: up to 100,000 steps with dev every 1,000; lr 1e-4 from the grid {1e-5, 2e-5, 5e-5, 1e-4} x batch {2, 4, 8}.
_IPT_PROMPT = {"n_tokens": 100, "init": "normal", "init_std": 0.02}
_IPT_TRAIN = {"optimizer": "adamw", "schedule": "linear", "lr": 1e-4, "batch_size": 8, "steps": 100_000,
              "eval_every": 1_000, "max_grad_norm": 1.0}

#: UDT's three methods at equal size on T5-base (1,105,920 each): adapter r = 12 (SiLU), LoRA r = 10 with scale
#: alpha / r = 1.6 on q and v, prefix m = 120 tokens with d_P = 24.
_UDT_METHODS = {"adapter": {"r": 12, "activation": "silu"}, "lora": {"r": 10, "alpha": 16.0, "targets": ["q", "v"]},
                "prefix": {"n_tokens": 120, "hidden": 24}}
_UDT_FIT_TRAIN = {"optimizer": "adafactor", "schedule": "constant", "lr": 1e-4, "batch_size": 4, "eval_every": 1_000}

PRESETS: dict[str, dict[str, Any]] = {
    "ipt-paper": {
        "tuning": {"methods": {"prompt": _IPT_PROMPT}, "lr": {"prompt": _IPT_TRAIN["lr"]},
                   "train": {k: v for k, v in _IPT_TRAIN.items() if k != "lr"}},
        "fit-subspace": {
            "ipt": {"method": "prompt", "d": 100, "hidden": 768, "alpha": 200.0, "lm_loss": "code"},
            "random-ae": {"method": "prompt", "d": 100, "hidden": 768},
        },
        # IST: "the same hyper-parameters as prompt tuning", a fresh z from N(0, 0.02).
        "subspace-tune": {"z_init": "normal", "z_std": 0.02, "train": _IPT_TRAIN},
    },
    "udt-paper": {
        # The paper states no original-space training settings beyond Adafactor at a constant rate.
        "tuning": {"methods": _UDT_METHODS, "train": {"optimizer": "adafactor", "schedule": "constant"}},
        "fit-subspace": {
            "unified": {"d": 100, "dist_weight": 10.0, "distance": "paper", "train": _UDT_FIT_TRAIN},
            # The simplified variant trains the shared vectors at 5e-5 and the up-projections at 1e-4, batch 8.
            "shared": {"d": 100, "vector_lr_scale": 0.5, "train": {**_UDT_FIT_TRAIN, "batch_size": 8}},
        },
        # Subspace optimisation: lr 1e-2 from the grid {1e-2, 5e-2}, batch 8, 5,000 steps, dev every 500.
        "subspace-tune": {"train": {"optimizer": "adafactor", "schedule": "constant", "lr": 1e-2, "batch_size": 8,
                                    "steps": 5_000, "eval_every": 500}},
    },
}


def preset_values(name: str, stage: str, finder: str | None = None) -> dict[str, Any]:
    """The values preset ``name`` gives ``stage`` (``tuning``, ``fit-subspace`` with a ``finder``,
    ``subspace-tune``); {} where it has none."""
    if name not in PRESETS:
        raise ConfigError(f"--preset {name!r}: expected one of {', '.join(PRESETS)}")
    values = PRESETS[name].get(stage, {})
    if stage == "fit-subspace":
        if finder not in values:
            raise ConfigError(f"--preset {name} has settings for --recipe {', '.join(values)}, not for {finder}")
        values = values[finder]
    return values


def tuning_values(name: str, method: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(method options, training settings with the method's learning rate) that preset ``name`` gives ``method``;
    a preset that does not name the method is refused (its settings are for other methods)."""
    values = preset_values(name, "tuning")
    if method not in values.get("methods", {}):
        raise ConfigError(f"--preset {name} has settings for {', '.join(values.get('methods', {}))}, not for "
                          f"{method}")
    train = dict(values.get("train", {}))
    if method in values.get("lr", {}):
        train["lr"] = values["lr"][method]
    return dict(values["methods"][method]), train
