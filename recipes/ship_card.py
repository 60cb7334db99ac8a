"""The card of a built-in subspace (recipes/ship_subspace.py): one sentence saying what it is, then its backbone, method
and training tasks, the recipe command that made it, its unseen-task table (through the report's own code,
recipes/smol_report) and how to use it."""

from __future__ import annotations

import dataclasses
import re
import textwrap

import taskspace.builtin as builtin
from taskspace.analysis import ratio
from taskspace.backbones import recorded_truncation
from taskspace.config import flag
from taskspace.subspace import SubspaceTuneConfig
from taskspace.subspace.space import SUBSPACE_JSON, SUBSPACE_TENSORS
from taskspace.tasks import CATALOG
from taskspace.train import TrainConfig

from recipe_common import fmt, train_config
from smol_report.relative import GAIN_MARGIN, Numbers, ci, seeds_text
from smol_report.sections import held_out_mark, held_out_note

#: The files of a subspace folder that a built-in holds (beside its card).
FILES = (SUBSPACE_JSON, SUBSPACE_TENSORS)
#: How many draws of z the decoding error of a rounded built-in is measured on.
ERROR_DRAWS = 16
#: How the card's first line names a method's solutions.
METHOD_WORDS = {"prompt": "prompt-tuning", "prefix": "prefix-tuning", "lora": "LoRA", "adapter": "adapter",
                "bitfit": "BitFit", "finetune": "fine-tuning"}


def summary(meta: dict) -> str:
    """The card's first line: one sentence saying what the subspace is."""
    d, backbone, tasks = meta["d"], meta["backbone"]["name"], meta["info"].get("tasks", [])
    kind = " and ".join(METHOD_WORDS.get(m, m) for m in meta["methods"])
    n = len(tasks)
    source = f"{n} {'CrossFit' if all(t in CATALOG for t in tasks) else 'training'} task{'' if n == 1 else 's'}"
    whose = source + ("'" if n != 1 else "'s")
    how = {"ipt": f"learnt (IPT's MSF) from {source}",
           "linear": f"the principal directions of {whose} solutions around their mean",
           "random-ae": "a random auto-encoder fitted to no task (a baseline)"}.get(
        meta["recipe"], f"found by the {meta['recipe']} finder from {source}")
    article = "An" if str(d).startswith("8") or d in (11, 18) else "A"
    return f"{article} {d}-dimensional {kind} subspace of {backbone}, {how}."


def options_text(options: dict) -> str:
    """``key=value`` pairs, as a card lists settings."""
    return ", ".join(f"{k}={v}" for k, v in options.items())


def backbone_lines(meta: dict, describe: dict) -> list[str]:
    bb = meta["backbone"]
    return ["## Backbone", "",
            f"- name: {bb['name']} ({bb['model_type']})",
            f"- weights fingerprint (sha256): {bb['fingerprint']}",
            f"- input template: {bb['template']}",
            f"- truncation of long inputs: {recorded_truncation(describe)}",
            f"- max input length: {describe['max_input_length']} tokens; max output length: "
            f"{describe['max_output_length']} tokens; decode: {describe['decode']}; dtype: {describe['dtype']}", "",
            "Loading it on another backbone or input template is refused; the lengths and the truncation are "
            "yours to match (the command below passes them).", ""]


def method_lines(meta: dict, cfg: dict) -> list[str]:
    (method, m), = meta["methods"].items()
    info = meta["info"]
    lines = ["## Method", "",
             f"- {method} (D = {m['size']:,}): {options_text(m['options'])}",
             f"- subspace: {meta['recipe']}, d = {meta['d']}; finder settings: {options_text(info.get('config', {}))}"]
    if "best_step" in info:
        lines.append(f"- the fit's best step: {info['best_step']} (dev {fmt(info.get('dev'))} %)")
    b = cfg["bank"]
    lines += [f"- the solutions it was fitted to: {method} tuning of each training task with "
              f"{options_text(b['methods'][method] or {})}, lr {b.get('lr', {}).get(method, 'the method default')}, "
              f"{options_text(b['train'])}; the few-shot files of data seed {cfg['data_seed']}",
              f"- taskspace {meta['taskspace_version']}", ""]
    tasks = meta["info"].get("tasks", [])
    if tasks:
        counts = {c: sum(CATALOG[t].category == c for t in tasks if t in CATALOG) for c in ("cls", "non-cls")}
        lines += [f"## Training tasks ({len(tasks)}: {counts['cls']} cls, {counts['non-cls']} non-cls)", "",
                  textwrap.fill(", ".join(tasks), 116), ""]
    return lines


def unseen_lines(cfg: dict, results: dict, key: str, method: str, d: int, size: int) -> list[str]:
    """The unseen-task table and E_rel, from results.json through the report's own numbers."""
    unseen, seeds = list(cfg["unseen_tasks"]), list(cfg["seeds"])
    num = Numbers(results, seeds)
    refs = num.reference(method, unseen)
    means = num.means(key, unseen)
    lines = [f"## Unseen tasks ({len(unseen)}, {seeds_text(len(seeds))} each: {seeds})", "",
             f"Test scores (%) on at most {cfg['max_test_examples']} test examples per task, mean ± 95 % interval "
             f"over the seeds (Student's t); ratio: IST's mean / {method} tuning's mean. None of these tasks is among "
             "the training tasks.", "",
             f"| task | category | frozen | {METHOD_WORDS.get(method, method)} (D = {size:,}) | IST, d = {d} "
             "| ratio % |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for t in unseen:
        row = [held_out_mark(t, results), CATALOG[t].category if t in CATALOG else "–", fmt(num.frozen.get(t)),
               ci(*num.absolute(f"reference/{method}", t)[:2]), ci(*num.absolute(key, t)[:2]),
               fmt(ratio(means[t], refs[t]))]
        lines.append("| " + " | ".join(row) + " |")
    note = held_out_note(cfg, results)
    if note:
        lines += ["", *note[:-1]]
    rows = [(f"IST through this subspace ({key})", key)]
    rows += [(f"random auto-encoder, d = {k.split('/d')[1]} (baseline)", k) for k in sorted(num.scores)
             if re.fullmatch(r"random-ae/d[0-9]+", k) and k != key]
    rows.append((f"{METHOD_WORDS.get(method, method)} (the reference)", f"reference/{method}"))
    lines += ["", "| what | E_rel % | gain kept % | seeds | seeds' spread (points) |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for label, k in rows:
        rel, kept = num.relative(k, unseen, refs), num.relative(k, unseen, refs, gain=True)
        lines.append(f"| {label} | {ci(*rel[:2])} | {ci(*kept[:2])} | {rel[2]} | {ci(num.spread(k, unseen), None)} |")
    return lines + ["", "E_rel: per seed, the mean over the unseen tasks of score / reference (the task's "
                        f"{method} tuning, mean over its seeds), then the mean over the seeds with its 95 % interval. "
                        "Gain kept: the share of the reference's gain over the frozen model that a score keeps, over "
                        f"the tasks where that gain is at least {100 * GAIN_MARGIN:.0f} points. Seeds' spread: the "
                        "mean over the unseen tasks of the standard deviation of a task's test score over its seeds. "
                        "As recipes/smol_report computes them for the recipe's report.", ""]


def ist_flags(ist: dict) -> list[str]:
    """The subspace-tune options that train as the recipe's IST did: its training settings where they differ from
    the command's defaults, and z's initialisation."""
    cli = SubspaceTuneConfig(task="", method="prompt", data_dir="")
    ours, flags = train_config(ist["train"]), []
    for f in dataclasses.fields(TrainConfig):
        value = getattr(ours, f.name)
        if (f.metadata.get("runtime") or not f.metadata.get("cli", True) or f.name == "seed"
                or value == getattr(cli.train, f.name)):
            continue
        if isinstance(value, bool):
            flags.append(flag(f.name) if value else "--no-" + f.name.replace("_", "-"))
        else:
            flags += [flag(f.name), "none" if value is None else str(value)]
    z_std = ist.get("z_std", 0.02)
    return flags + ([] if z_std == cli.z_std else ["--z-std", str(z_std)])


def usage_lines(name: str, meta: dict, describe: dict, cfg: dict) -> list[str]:
    method = next(iter(meta["methods"]))
    words = ["taskspace", "subspace-tune", "--subspace", builtin.PREFIX + name, "--task", "reviews", "--data-dir",
             "my_data/reviews", "--out", "runs/reviews"]
    tune = " \\\n    ".join(textwrap.wrap(" ".join(words), 112, break_on_hyphens=False, break_long_words=False))
    settings = [f"--decode {describe['decode']}"] + [
        f"--backbone-opt {option}={recorded_truncation(describe) if option == 'truncation' else describe[option]}"
        for option in ("template", "truncation", "max_input_length", "max_output_length")]
    flags = ist_flags(cfg["ist"])
    training = " ".join(flags) if flags else "the command's defaults"
    return ["## Use", "",
            f"Adapt {meta['backbone']['name']} to a task of your own by tuning only the {meta['d']} numbers of an "
            "intrinsic vector (`my_data/reviews`: a folder with its train and dev files), then export the decoded "
            f"{method} parameters as a PEFT adapter:", "",
            "```bash", tune, "taskspace export runs/reviews --format peft --out adapters/reviews", "```", "",
            f"The built-in loads the backbone as the run did (`{' '.join(settings)}`) and trains z as the recipe's "
            f"IST did (`{training}`); an option given replaces any of them.", ""]


def storage_text(storage: dict | None) -> str:
    """How the card says the tensors are stored: as saved, or lighter (``storage``: ``shipped`` of the record)."""
    if not storage:
        return f"`{FILES[1]}` as saved"
    parts = []
    if storage["decoder_only"]:
        parts.append("without its down-projection (the encoder of solutions into the subspace; tuning in it only "
                     "decodes)")
    if storage["dtype"] != "float32":
        parts.append(f"with its projections' weights rounded to {storage['dtype']} (loaded back into float32; the "
                     "anchor kept in float32): decoded parameters differ from the saved subspace's by "
                     f"{storage['decode_error']:.1e} relative (||shipped - saved|| / ||saved - anchor||, the worst of "
                     f"{ERROR_DRAWS} draws of z from N(0, 1))")
    return f"`{FILES[1]}` " + " and ".join(parts)


def card_text(name: str, subspace: str, meta: dict, cfg: dict, results: dict, key: str, command: str,
              storage: dict | None = None) -> str:
    (method, m), = meta["methods"].items()
    describe = results["setting"]["describe"]
    lines = [f"# {summary(meta)}", "",
             f"`builtin:{name}`: `{subspace}` of the recipe run below, its `{FILES[0]}` (the bank it was fitted to "
             f"named from the run's folder) and {storage_text(storage)}.",
             ""]
    lines += backbone_lines(meta, describe) + method_lines(meta, cfg)
    lines += ["## Recipe", "", "```bash", command, "```", ""]
    lines += unseen_lines(cfg, results, key, method, meta["d"], m["size"])
    lines += usage_lines(name, meta, describe, cfg)
    return "\n".join(lines)
