"""Ship a subspace of a finished recipe run as a built-in (``builtin:NAME``): its saved files and its card.

    python recipes/ship_subspace.py --run runs/smol-catalog --recipe recipes/smol-catalog.yaml \\
        --subspace ipt-d100 --name smollm2-prompt [--out src/taskspace/builtin] [--check]

``--subspace`` is a folder of the run that recipes/smol.py fitted and tuned through on the unseen tasks: ``ipt-d<d>``
(MSF), ``linear-d<d>`` (the bank's principal directions) or ``random-ae-d<d>``. Into ``OUT/NAME/`` go its
``subspace.json`` and ``subspace.safetensors`` as saved (the JSON's bank named from the run folder, not by this
machine's path, and the recipe's IST settings added as what ``subspace-tune`` trains with in it by default; not its
fit state, nor its runs, nor the bank) and
``card.md``: one sentence saying what it is, then the backbone (name, weights fingerprint, input template,
truncation, lengths, as the run recorded them), the method and the finder's settings, the training tasks, the recipe
command that made it, the unseen-task table (prompt tuning and IST through this subspace, mean and 95 % interval over
the seeds, their ratio; E_rel with its interval, and the random baseline's where the run has it; computed by the
report's own code, recipes/smol_report) and how to use it. The run folder does not record its recipe file, so
``--recipe`` names it (and ``--part`` the part, for a file with parts); the recipe is checked against the run.

Refused with one line, nothing written: a subspace folder the run lacks, a stage not finished on every unseen task
and seed, a recipe whose training tasks or backbone differ from the subspace's, a name already shipped, and a
built-in that would weigh more than ``taskspace.builtin.MAX_BYTES``. ``--check`` then loads the backbone as the run
recorded it and the built-in through ``builtin:NAME`` (``TASKSPACE_BUILTIN_DIR`` set to OUT), and checks that it
decodes as the run's folder does; a built-in that fails the check is removed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import sys
import textwrap
from pathlib import Path

import torch

import taskspace.builtin as builtin
from taskspace.analysis import ratio
from taskspace.backbones import recorded_truncation, reload_backbone
from taskspace.config import flag
from taskspace.errors import ConfigError, DataError, storage_error
from taskspace.store import read_json, write_text
from taskspace.subspace import Subspace, SubspaceTuneConfig
from taskspace.subspace.space import SUBSPACE_JSON, SUBSPACE_TENSORS
from taskspace.tasks import CATALOG
from taskspace.train import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the recipes' shared modules, also when imported
from recipe_common import fmt, read_recipe, run_main, train_config  # noqa: E402
from smol_report.relative import GAIN_MARGIN, Numbers, ci, seeds_text  # noqa: E402
from smol_settings import RESULTS, parts_of  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: The files of a subspace folder that a built-in holds (beside its card).
FILES = (SUBSPACE_JSON, SUBSPACE_TENSORS)
#: A subspace folder of recipes/smol.py and the key its unseen-task runs are recorded under: ipt-d100 -> ipt/d100.
FOLDER = re.compile(r"(?P<kind>ipt|linear|random-ae)-d(?P<d>[0-9]+)")
#: What a built-in may be called: it becomes ``builtin:NAME`` and a folder name.
NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
#: How the card's first line names a method's solutions.
METHOD_WORDS = {"prompt": "prompt-tuning", "prefix": "prefix-tuning", "lora": "LoRA", "adapter": "adapter",
                "bitfit": "BitFit", "finetune": "fine-tuning"}


def shown(path: str | Path) -> str:
    """A path as the card prints it: relative to the repository when inside it, else as given."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def source_folder(run: Path, subspace: str) -> tuple[Path, str]:
    """The run's subspace folder named ``subspace`` and the key its unseen-task runs are recorded under; refused,
    naming it and the run's subspaces, when the run lacks it."""
    folder, form = run / subspace, FOLDER.fullmatch(subspace)
    if form and all((folder / f).is_file() for f in FILES):
        return folder, f"{form['kind']}/d{form['d']}"
    if not form:
        why = "expected a folder ipt-d<d>, linear-d<d> or random-ae-d<d> of the run"
    elif not folder.is_dir():
        why = f"no such folder in {run}"
    else:
        why = f"{folder} holds no saved subspace ({' and '.join(FILES)})"
    have = sorted(p.name for p in run.iterdir() if FOLDER.fullmatch(p.name) and (p / SUBSPACE_JSON).is_file())
    raise ConfigError(f"--subspace {subspace}: {why}; the run's subspaces: {', '.join(have) or 'none'}")


def recipe_part(path: str, part: str | None, run: Path) -> dict:
    """The recipe (or its part ``part``) with its split read and its preset applied, as the runner ran it."""
    parts = {name: cfg for name, cfg, _ in parts_of(read_recipe(path), run)}
    names = ", ".join(n for n in parts if n)
    if part is None and "" not in parts:
        raise ConfigError(f"--recipe {path}: the file has parts ({names}); name the run's with --part")
    if part is not None and part not in parts:
        raise ConfigError(f"--part {part}: {path} has " + (f"no such part (its parts: {names})" if names
                                                            else "no 'parts'"))
    return parts[part or ""]


def check_finished(cfg: dict, recipe: str, results: dict, meta: dict, key: str, method: str, where: str) -> None:
    """Refuse a run whose recipe is not the subspace's (training tasks, backbone) or whose unseen-task table would
    have holes (a stage not finished on every unseen task and seed)."""
    fitted = meta["info"].get("tasks", [])
    if fitted and set(fitted) != set(cfg["train_tasks"]):
        other = sorted(set(fitted) ^ set(cfg["train_tasks"]))[0]
        raise ConfigError(f"--recipe {recipe}: its training tasks are not those the subspace was fitted to ({other} "
                          "is in one list only): the recipe of another run?")
    if results.get("setting", {}).get("fingerprint") != meta["backbone"]["fingerprint"]:
        raise ConfigError(f"{where}: the run records no backbone, or another one than the subspace was fitted on")
    scores = results.get("scores", {})
    for k in (f"reference/{method}", key):
        for t in cfg["unseen_tasks"]:
            for s in cfg["seeds"]:
                if str(s) not in scores.get(k, {}).get(t, {}):
                    raise ConfigError(f"{where}: no {k} score of {t}, seed {s}: the stage is unfinished (run the "
                                      "recipe again to finish it)")


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
        row = [t, CATALOG[t].category if t in CATALOG else "–", fmt(num.frozen.get(t)),
               ci(*num.absolute(f"reference/{method}", t)[:2]), ci(*num.absolute(key, t)[:2]),
               fmt(ratio(means[t], refs[t]))]
        lines.append("| " + " | ".join(row) + " |")
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


def card_text(name: str, subspace: str, meta: dict, cfg: dict, results: dict, key: str, command: str) -> str:
    (method, m), = meta["methods"].items()
    describe = results["setting"]["describe"]
    lines = [f"# {summary(meta)}", "",
             f"`builtin:{name}`: `{subspace}` of the recipe run below, its `{FILES[0]}` (the bank it was fitted to "
             f"named from the run's folder) and `{FILES[1]}` as saved.",
             ""]
    lines += backbone_lines(meta, describe) + method_lines(meta, cfg)
    lines += ["## Recipe", "", "```bash", command, "```", ""]
    lines += unseen_lines(cfg, results, key, method, meta["d"], m["size"])
    lines += usage_lines(name, meta, describe, cfg)
    return "\n".join(lines)


def ship(run: Path, subspace: str, name: str, out: Path, cfg: dict, recipe: str, command: str) -> Path:
    """``OUT/NAME``: the subspace's files and its card, written whole or not at all."""
    if not NAME.fullmatch(name):
        raise ConfigError(f"--name {name}: expected lower-case letters, digits, '.', '-' or '_', starting with a "
                          "letter or digit (it becomes builtin:NAME and a folder name)")
    if not (run / RESULTS).is_file():
        raise ConfigError(f"--run {run}: no {RESULTS} (run the recipe first)")
    folder, key = source_folder(run, subspace)
    meta, results = read_json(folder / SUBSPACE_JSON), read_json(run / RESULTS)
    if len(meta["methods"]) != 1:
        raise ConfigError(f"--subspace {subspace}: it holds the methods {list(meta['methods'])}; a built-in of this "
                          "script holds one (its table compares it with that method's tuning)")
    if "ist" not in cfg:
        raise ConfigError(f"--recipe {recipe}: it has no 'ist' section (the IST settings the card's command "
                          "repeats)")
    method = next(iter(meta["methods"]))
    check_finished(cfg, recipe, results, meta, key, method, str(run / RESULTS))
    card = card_text(name, subspace, meta, cfg, results, key, command)
    target = out / name
    if target.exists():
        raise ConfigError(f"--name {name}: {target} exists already (remove it to ship again)")
    record = json.dumps(shipped_record(meta, run, cfg["ist"], method), indent=2) + "\n"
    weight = (len(record.encode("utf-8")) + (folder / SUBSPACE_TENSORS).stat().st_size
              + len(card.encode("utf-8")))
    if weight > builtin.MAX_BYTES:
        raise ConfigError(f"--subspace {subspace}: the built-in would weigh {weight:,} bytes, above the "
                          f"{builtin.MAX_BYTES:,} bytes a built-in may weigh (taskspace.builtin.MAX_BYTES)")
    created = [p for p in (out, *out.parents) if not p.exists()]
    partial = out / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # what an earlier attempt, killed while writing, left
    try:
        partial.mkdir(parents=True)
        write_text(partial / SUBSPACE_JSON, record)
        shutil.copyfile(folder / SUBSPACE_TENSORS, partial / SUBSPACE_TENSORS)
        write_text(partial / builtin.CARD, card)
        partial.rename(target)
    except BaseException as e:
        shutil.rmtree(partial, ignore_errors=True)
        remove_created(created)
        if isinstance(e, OSError):
            raise storage_error(e, target) from None
        raise
    return target


def shipped_record(meta: dict, run: Path, ist: dict, method: str) -> dict:
    """The subspace's ``subspace.json`` as it ships: as saved, except that the bank it was fitted to is named from
    the run's folder (``smol-catalog/bank``) instead of by this machine's absolute path, and with the recipe's IST
    settings (``ist``) under ``subspace_tune``: what ``taskspace subspace-tune`` trains with in it by default."""
    try:
        SubspaceTuneConfig(task="", method=method, data_dir="").updated(ist)
    except ConfigError as e:
        raise ConfigError(f"the recipe's ist section: {e}") from None
    info = meta.get("info", {})
    meta = {**meta, "subspace_tune": ist}
    if "bank" not in info:
        return meta
    bank = Path(info["bank"]).resolve()
    inside = bank.is_relative_to(run.resolve())
    shown = (Path(run.resolve().name) / bank.relative_to(run.resolve())).as_posix() if inside else bank.name
    return {**meta, "info": {**info, "bank": shown}}


def remove_created(created: list[Path]) -> None:
    """Remove the folders (innermost first) that shipping created and left empty."""
    for p in created:
        if p.is_dir() and not any(p.iterdir()):
            p.rmdir()


def check(name: str, out: Path, folder: Path, describe: dict) -> str:
    """Load the backbone as the run recorded it and the built-in through ``builtin:NAME`` from ``out``; refused
    unless it decodes as the run's folder does. Returns what was checked."""
    backbone = reload_backbone(describe)
    previous = os.environ.get(builtin.ROOT_ENV)
    os.environ[builtin.ROOT_ENV] = str(out)
    try:
        shipped = Subspace.load(builtin.PREFIX + name, backbone)
        listed = builtin.Builtin.read(name)
    finally:
        if previous is None:
            del os.environ[builtin.ROOT_ENV]
        else:
            os.environ[builtin.ROOT_ENV] = previous
    source = Subspace.load(folder, backbone)
    z = torch.randn(4, shipped.d, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for method in source.methods:
            if not torch.equal(shipped.theta(method, z), source.theta(method, z)):
                raise ConfigError(f"--check: builtin:{name} decodes {method} otherwise than {folder}")
    return (f"check: builtin:{name} loads on {backbone.name} ({backbone.template} template) and decodes as {folder} "
            f"does; `taskspace subspaces` shows it as: {listed.summary}")


def recipe_command(args: argparse.Namespace) -> str:
    """The command that made the run: the runner, the recipe file, its output folder, report and part."""
    out = Path(args.run).parent if args.part else Path(args.run)
    report = shown(args.report) if args.report else f"reports/{Path(args.recipe).stem}.md"
    part = f" --part {args.part}" if args.part else ""
    return f"python recipes/smol.py {shown(args.recipe)} --out {shown(out)} --report {report}{part}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="the recipe's output folder (recipes/smol.py --out)")
    ap.add_argument("--recipe", required=True, help="the recipe file that made the run (recipes/*.yaml)")
    ap.add_argument("--part", help="the part of a recipe file with parts (the run folder is OUT/PART)")
    ap.add_argument("--report", help="the report the recipe wrote, for the card's command (default: "
                                     "reports/<recipe name>.md)")
    ap.add_argument("--subspace", required=True,
                    help="the run's subspace folder: ipt-d<d>, linear-d<d> or random-ae-d<d>")
    ap.add_argument("--name", required=True, help="the built-in's name (builtin:NAME)")
    ap.add_argument("--out", default=str(REPO / "src" / "taskspace" / "builtin"),
                    help="the folder of the built-ins (default: the package's, src/taskspace/builtin)")
    ap.add_argument("--check", action="store_true", help="then load the backbone as the run recorded it and the "
                                                         "built-in through builtin:NAME, and compare it with the run's")
    args = ap.parse_args(argv)
    run, out = Path(args.run), Path(args.out)
    if not run.is_dir():
        raise DataError("no such run folder", run)
    cfg = recipe_part(args.recipe, args.part, run.parent if args.part else run)
    created = [p for p in (out, *out.parents) if not p.exists()]
    target = ship(run, args.subspace, args.name, out, cfg, args.recipe, recipe_command(args))
    print(f"shipped: {target} ({builtin.folder_bytes(target):,} bytes)")
    if args.check:
        try:
            print(check(args.name, out, run / args.subspace, read_json(run / RESULTS)["setting"]["describe"]))
        except BaseException:
            shutil.rmtree(target)
            remove_created(created)
            raise


if __name__ == "__main__":
    run_main(main)
