"""The comparison of UDT's projection starts (recipes/udt_start.py): the variants it fits and its report section,
which recipes/smol.py's report includes for a run folder that holds ``udt-start/results.json``."""

from __future__ import annotations

from recipe_common import fmt

#: variant name -> the fit's settings that differ from the recipe's (``train``: merged into its training settings),
#: and what the variant is.
STARTS: dict[str, tuple[dict, str]] = {
    "zeros": ({"up_init": "zeros", "down_init": "uniform"},
              "up-projections at zero (every decoded solution starts at its anchor), down-projections nn.Linear's "
              "uniform start, the recipe's optimiser: recipes/smol-udt.yaml's fit"),
    "normal": ({"up_init": "normal", "down_init": "normal"},
               "both projections from N(0, 0.02), as the authors' code (init_weight) and the udt-paper preset, the "
               "recipe's optimiser"),
    "normal-adafactor": ({"up_init": "normal", "down_init": "normal",
                          "train": {"optimizer": "adafactor", "schedule": "constant", "max_grad_norm": None}},
                         "both projections from N(0, 0.02) and the paper's optimiser as the udt-paper preset has it "
                         "(Adafactor at a constant rate, no clipping), at the recipe's learning rate: the setting in "
                         "which nn.Linear's uniform start failed (docs/subspaces.md)"),
}


def start_lines(cfg: dict, results: dict, seconds: dict, source: str = "the recipe") -> list[str]:
    """The section: what was compared, and per variant the fit's dev curve, its selected step, each method's
    relative error over the training tasks, and the fit's minutes (``seconds``: the stages' times)."""
    fit = cfg["udt"]["fit"]
    tasks = list(cfg["train_tasks"])
    settings = ", ".join(f"{k} {v}" for k, v in fit.items() if k not in ("up_init", "down_init"))
    lines = [
        "## Where UDT's projections start, on the same bank",
        "",
        f"The bank of {source} ({len(tasks)} training tasks: {', '.join(tasks)}; methods "
        f"{', '.join(cfg['bank']['methods'])}) and its unified fit ({settings}), "
        "fitted once per start of the projections (one variant also changes the optimiser), nothing else changed. "
        "Dev: the score the fit selects on, the mean over methods and training tasks of the dev score of each task's "
        "solution decoded from the methods' intrinsic vectors mixed with equal weights (step 0: the start itself). "
        "Relative error: ||decoded - delta|| / ||delta|| of the selected state, mean (and range) over the training "
        "tasks (a task whose bank solution is its anchor has none); 1.0 is the anchor, no change at all.",
        "",
    ]
    methods = list(fit.get("methods", ("adapter", "prefix", "lora")))
    lines += ["| variant | dev by step | selected step | " + " | ".join(f"{m}: relative error" for m in methods)
              + " | minutes |",
              "| --- | --- | ---: | " + " | ".join("---:" for _ in methods) + " | ---: |"]
    for name, (_, what) in STARTS.items():
        r = results.get(name)
        if r is None:
            continue
        curve = ", ".join(f"{s}: {fmt(d)}" for s, d in r["dev"])
        cells = []
        for m in methods:
            errs = [e for e in r["relative_error"][m].values() if e is not None]
            cells.append(f"{sum(errs) / len(errs):.2f} ({min(errs):.2f}-{max(errs):.2f})" if errs else "–")
        minutes = seconds.get(f"fit: {name}")
        lines.append(f"| {name} | {curve} | {r['best_step']} | " + " | ".join(cells)
                     + f" | {'–' if minutes is None else f'{minutes / 60:.1f}'} |")
    lines += ["", "The starts:", ""] + [f"- `{name}`: {what}." for name, (_, what) in STARTS.items()] + [""]
    return lines


