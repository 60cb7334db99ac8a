"""Comparisons of one subspace fit in several variants on the same bank (recipes/fit_variants.py): what each compares,
its variants, and its report section, which recipes/smol.py's report includes for a run folder that holds
``variants/<comparison>/results.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from recipe_common import fmt


@dataclass(frozen=True)
class Comparison:
    """One fit of a recipe (the finder ``finder`` with the settings at ``cfg[section][key]``, plus ``fixed(cfg)``)
    in each of ``variants``: name -> (the settings that differ, ``train`` merged into the training settings; what the
    variant is)."""

    title: str
    finder: str
    section: tuple[str, str]
    variants: dict[str, tuple[dict, str]]
    #: What the fit's dev score averages and what the relative error decodes, said once in the section.
    measures: str
    fixed: Callable[[dict], dict] = field(default=lambda cfg: {})

    def settings(self, cfg: dict) -> dict:
        """The recipe's settings of the fit (as written, with the fixed ones)."""
        section, key = self.section
        return {**cfg[section][key], **self.fixed(cfg)}

    def variant_settings(self, base: dict, name: str) -> dict:
        """The fit's settings in variant ``name``: ``base`` (the recipe's fit config, ``Config.to_dict``) with the
        variant's changes, a change that is a function computed from ``base``, and ``train`` merged into the
        training settings."""
        changes = dict(self.variants[name][0])
        train_changes = changes.pop("train", {})

        def value(v):
            return v(base) if callable(v) else v

        return {**base, **{k: value(v) for k, v in changes.items()},
                "train": {**base["train"], **{k: value(v) for k, v in train_changes.items()}}}


def _ipt_fixed(cfg: dict) -> dict:
    """MSF's method and d: the recipe's IPT method and its largest d."""
    return {"method": cfg["ipt"].get("method", "prompt"), "d": max(cfg["ipt"]["dims"])}


def _eighth_steps(base: dict) -> int:
    """An eighth of the fit's steps (at 8 times its batch of 8: as many examples)."""
    return max(1, round(base["train"]["steps"] / 8))


COMPARISONS: dict[str, Comparison] = {
    "udt-start": Comparison(
        title="Where UDT's projections start, on the same bank",
        finder="unified",
        section=("udt", "fit"),
        variants={
            "zeros": ({"up_init": "zeros", "down_init": "uniform"},
                      "up-projections at zero (every decoded solution starts at its anchor), down-projections "
                      "nn.Linear's uniform start, the recipe's optimiser: recipes/smol-udt.yaml's fit"),
            "normal": ({"up_init": "normal", "down_init": "normal"},
                       "both projections from N(0, 0.02), as the authors' code (init_weight) and the udt-paper "
                       "preset, the recipe's optimiser"),
            "normal-adafactor": ({"up_init": "normal", "down_init": "normal",
                                  "train": {"optimizer": "adafactor", "schedule": "constant", "max_grad_norm": None}},
                                 "both projections from N(0, 0.02) and the paper's optimiser as the udt-paper preset "
                                 "has it (Adafactor at a constant rate, no clipping), at the recipe's learning rate: "
                                 "the setting in which nn.Linear's uniform start failed (docs/subspaces.md)"),
        },
        measures="the mean over methods and training tasks of the dev score of each task's solution decoded from the "
                 "methods' intrinsic vectors mixed with equal weights (step 0: the start itself). Relative error: "
                 "||up_m(mixed) - delta_m|| / ||delta_m||",
    ),
    "msf-balance": Comparison(
        title="MSF's batch against alpha, on the same bank",
        finder="ipt",
        section=("ipt", "msf"),
        fixed=_ipt_fixed,
        variants={
            "recipe": ({}, "the recipe's MSF: alpha against the code's LM loss summed over the batch's tokens, at the "
                           "recipe's batch"),
            "alpha/8": ({"alpha": lambda base: base["alpha"] / 8},
                        "alpha divided by 8: the balance of the authors' code, whose batch of 64 is 8 times the "
                        "SmolLM2 recipes' batch of 8 (the summed LM loss grows with the batch, the reconstruction MSE "
                        "does not), at the recipe's cost"),
            "batch-64": ({"train": {"batch_size": 64, "steps": _eighth_steps, "eval_every": _eighth_steps}},
                         "the authors' batch of 64 at the recipe's alpha, for an eighth of the steps (as many "
                         "examples as the recipe's fit)"),
        },
        measures="the mean over training tasks of the dev score of each task's solution passed through the "
                 "auto-encoder (step 0: the start itself). Relative error: ||decoder(encoder(theta)) - theta|| / "
                 "||theta||",
    ),
}


def _train_text(train: dict) -> str:
    return (f"{train.get('steps', '?')} steps of {train.get('batch_size', '?')}, {train.get('optimizer', 'adamw')} "
            f"at {train.get('lr', '?')} with {train.get('schedule', 'linear')} decay"
            + (f", dev every {train['eval_every']}" if "eval_every" in train else "")
            + (f", clipping at {train['max_grad_norm']}" if train.get("max_grad_norm") is not None else ""))


def variant_lines(comparison: str, cfg: dict, results: dict, seconds: dict, source: str = "the recipe",
                  bank_seconds: float | None = None) -> list[str]:
    """The section of ``comparison``: what was compared, and per variant the fit's dev curve, its selected step, each
    method's relative error over the training tasks, and the fit's minutes (``seconds``: the fits' times;
    ``bank_seconds``: the bank's, from the recipe's stages)."""
    c = COMPARISONS[comparison]
    fit = c.settings(cfg)
    base = results.get("setting", {}).get("base")
    if base is not None:  # the values the fit ran with, for the settings the recipe writes (and its training's)
        fit = {**{k: base.get(k, v) for k, v in fit.items()}, "train": base["train"]}
    names = [n for n in c.variants if n in results]
    settings = ", ".join([f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in fit.items()
                          if k != "train"] + [_train_text(fit.get("train", {}))])
    setting = results.get("setting", {})
    tasks = setting.get("tasks", list(cfg["train_tasks"]))
    partial = len(tasks) != len(cfg["train_tasks"])
    of = f" (those of its {len(cfg['train_tasks'])} whose bank entries were finished)" if partial else ""
    bank_train = cfg["bank"].get("train", {})
    minutes = "" if bank_seconds is None else (
        f"; the bank stage had run {bank_seconds / 60:.1f} min" if partial else
        f"; the bank took {bank_seconds / 60:.1f} min")
    text = (f"The bank of {source} ({len(tasks)} training tasks{of}: {', '.join(tasks)}; methods "
            f"{', '.join(cfg['bank']['methods'])}, {bank_train.get('steps', '?')} steps of "
            f"{bank_train.get('batch_size', '?')} each{minutes}) and its {c.finder} fit (as the recipe set it when "
            f"measured: {settings}), "
            "fitted once per variant below, nothing else changed. Dev: the score the fit selects on, " + c.measures
            + " of the selected state, mean (and range) over the training tasks (a task whose bank solution is its "
            "anchor has none); 1.0 is the anchor, no change at all.")
    if setting.get("bank_dev") is not None:
        text += f" The bank's own solutions score {fmt(setting['bank_dev'])} on dev (the same mean)."
    if "backbone" in setting:
        b = setting["backbone"]
        text += (f" Backbone: {b['name']}, {b['dtype']} weights, the {b['template']} template, "
                 f"{b['max_input_length']} input tokens, {setting['threads']} threads.")
    methods = list(next(iter(results[n]["relative_error"] for n in names), ()))
    lines = [f"## {c.title}", "", text, "",
             "| variant | dev by step | selected step | " + " | ".join(f"{m}: relative error" for m in methods)
             + " | minutes |",
             "| --- | --- | ---: | " + " | ".join("---:" for _ in methods) + " | ---: |"]
    for name in names:
        r = results[name]
        curve = ", ".join(f"{s}: {fmt(d)}" for s, d in r["dev"])
        cells = []
        for m in methods:
            errs = [e for e in r["relative_error"][m].values() if e is not None]
            cells.append(f"{sum(errs) / len(errs):.2f} ({min(errs):.2f}-{max(errs):.2f})" if errs else "–")
        spent = seconds.get(f"fit: {name}")
        lines.append(f"| {name} | {curve} | {r['best_step']} | " + " | ".join(cells)
                     + f" | {'–' if spent is None else f'{spent / 60:.1f}'} |")
    lines += ["", "The variants:", ""] + [f"- `{n}`: {c.variants[n][1]}." for n in names] + [""]
    return lines
