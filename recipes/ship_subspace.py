"""Ship a subspace of a finished recipe run as a built-in (``builtin:NAME``): its saved files and its card.

    python recipes/ship_subspace.py --run runs/smol-catalog --recipe recipes/smol-catalog.yaml \\
        --subspace ipt-d100 --name smollm2-prompt [--out src/taskspace/builtin] [--decoder-only] \\
        [--dtype float16] [--check]

``--subspace`` is a folder of the run that recipes/smol.py fitted and tuned through on the unseen tasks: ``ipt-d<d>``
(MSF), ``linear-d<d>`` (the bank's principal directions) or ``random-ae-d<d>``. Into ``OUT/NAME/`` go its
``subspace.json`` and ``subspace.safetensors`` as saved (the JSON's bank named from the run folder, not by this
machine's path, and the recipe's IST settings added as what ``subspace-tune`` trains with in it by default; not its
fit state, nor its runs, nor the bank) and ``card.md`` (recipes/ship_card.py): one sentence saying what it is,
then the backbone (name, weights fingerprint, input template, truncation, lengths, as the run recorded them), the
method and the finder's settings, the training tasks, the recipe command that made it, the unseen-task table
(prompt tuning and IST through this subspace, mean and 95 % interval over the seeds, their ratio; E_rel with its
interval, and the random baseline's where the run has it; computed by the report's own code, recipes/smol_report)
and how to use it. The run folder does not record its recipe file, so
``--recipe`` names it (and ``--part`` the part, for a file with parts); the recipe is checked against the run.

Refused with one line, nothing written: a subspace folder the run lacks, a stage not finished on every unseen task
and seed, a recipe whose training tasks or backbone differ from the subspace's, a name already shipped, and a
built-in that would weigh more than ``taskspace.builtin.MAX_BYTES``. ``--check`` then loads the backbone as the run
recorded it and the built-in through ``builtin:NAME`` (``TASKSPACE_BUILTIN_DIR`` set to OUT), and checks that it
decodes as the run's folder does; a built-in that fails the check is removed.

A subspace too heavy as saved (MSF at d = 100 on SmolLM2, in float32: its decoder 100 -> 768 -> 11,520, 36 MB, and
its encoder, 4.6 MB) ships lighter with ``--decoder-only`` (without the down-projection, which encodes a solution
into the subspace: tuning in it only decodes) and ``--dtype float16`` (its projections' weights rounded to half
precision, loaded back into float32; the anchor as saved).
Both are recorded under ``shipped`` in its ``subspace.json`` and said on its card; with ``--dtype float16`` the
check compares the decoded parameters within ``HALF_TOLERANCE`` (relative) instead of exactly, and prints the
error it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

import torch

import taskspace.builtin as builtin
from taskspace.backbones import reload_backbone
from taskspace.errors import ConfigError, DataError, storage_error
from taskspace.projections import build_projection
from taskspace.store import read_json, read_tensors, write_tensors, write_text
from taskspace.subspace import Subspace, SubspaceTuneConfig
from taskspace.subspace.space import SUBSPACE_JSON, SUBSPACE_TENSORS

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the recipes' shared modules, also when imported
from recipe_common import read_recipe, run_main  # noqa: E402
from ship_card import ERROR_DRAWS, FILES, card_text  # noqa: E402
from smol_settings import RESULTS, parts_of  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: A subspace folder of recipes/smol.py and the key its unseen-task runs are recorded under: ipt-d100 -> ipt/d100.
FOLDER = re.compile(r"(?P<kind>ipt|linear|random-ae)-d(?P<d>[0-9]+)")
#: The largest relative error ``||shipped - saved|| / ||saved - anchor||`` of decoded parameters that ``--check``
#: accepts from a subspace stored in float16 (rounding the weights of MSF's decoder at d = 100 on SmolLM2, as
#: initialised, gives 3e-4).
HALF_TOLERANCE = 1e-2
DTYPES = {"float32": torch.float32, "float16": torch.float16}
#: What a built-in may be called: it becomes ``builtin:NAME`` and a folder name.
NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


def shown(path: str | Path) -> str:
    """A path as the card prints it: relative to the repository when inside it, else as given."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def source_folder(run: Path, subspace: str, option: str = "--subspace") -> tuple[Path, str]:
    """The run's subspace folder named ``subspace`` and the key its unseen-task runs are recorded under; refused,
    naming it (given as ``option``) and the run's subspaces, when the run lacks it."""
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
    raise ConfigError(f"{option} {subspace}: {why}; the run's subspaces: {', '.join(have) or 'none'}")


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


def stored_tensors(folder: Path, meta: dict, decoder_only: bool, dtype: str) -> tuple[dict | None, dict | None]:
    """The tensors a built-in stores and how (``shipped`` of its record): ``(None, None)`` for the saved file as it
    is; else the saved tensors without the down-projections (``decoder_only``) and with the projections' weights in
    ``dtype`` (anchors and task vectors as saved), and the relative error that rounding puts in decoded parameters."""
    if not decoder_only and dtype == "float32":
        return None, None
    saved = read_tensors(folder / SUBSPACE_TENSORS)
    stored = {k: v.to(DTYPES[dtype]) if k.startswith(("up.", "down.")) else v for k, v in saved.items()
              if not (decoder_only and k.startswith("down."))}
    return stored, {"decoder_only": decoder_only, "dtype": dtype, "decode_error": decode_error(meta, saved, stored)}


def decode_error(meta: dict, saved: dict, stored: dict) -> float:
    """The worst relative error ``||up'(z) - up(z)|| / ||up(z)||`` over the methods and ``ERROR_DRAWS`` draws of z
    from N(0, 1), of the up-projections rebuilt from ``stored`` (``up'``) against those of ``saved``."""
    z = torch.randn(ERROR_DRAWS, meta["d"], generator=torch.Generator().manual_seed(0))
    worst = 0.0
    for name, m in meta["methods"].items():
        decoded = []
        for tensors in (saved, stored):
            proj = build_projection(m["up"])
            prefix = f"up.{name}."
            proj.load_state_dict({k[len(prefix):]: v.float() for k, v in tensors.items() if k.startswith(prefix)})
            with torch.no_grad():
                decoded.append(proj(z))
        worst = max(worst, ((decoded[1] - decoded[0]).norm(dim=-1) / decoded[0].norm(dim=-1)).max().item())
    return worst


def ship(run: Path, subspace: str, name: str, out: Path, cfg: dict, recipe: str, command: str,
         decoder_only: bool = False, dtype: str = "float32") -> Path:
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
    target = out / name
    if target.exists():
        raise ConfigError(f"--name {name}: {target} exists already (remove it to ship again)")
    tensors, storage = stored_tensors(folder, meta, decoder_only, dtype)
    card = card_text(name, subspace, meta, cfg, results, key, command, storage)
    record = json.dumps(shipped_record(meta, run, cfg["ist"], method, storage), indent=2) + "\n"
    created = [p for p in (out, *out.parents) if not p.exists()]
    partial = out / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # what an earlier attempt, killed while writing, left
    try:
        partial.mkdir(parents=True)
        write_text(partial / SUBSPACE_JSON, record)
        if tensors is None:
            shutil.copyfile(folder / SUBSPACE_TENSORS, partial / SUBSPACE_TENSORS)
        else:
            write_tensors(partial / SUBSPACE_TENSORS, tensors, {"format": meta["format"], "recipe": meta["recipe"]})
        write_text(partial / builtin.CARD, card)
        weight = builtin.folder_bytes(partial)
        if weight > builtin.MAX_BYTES:
            raise ConfigError(f"--subspace {subspace}: the built-in would weigh {weight:,} bytes, above the "
                              f"{builtin.MAX_BYTES:,} bytes a built-in may weigh (taskspace.builtin.MAX_BYTES)"
                              + ("" if tensors is not None else "; --decoder-only and --dtype float16 make it "
                                 "lighter"))
        partial.rename(target)
    except BaseException as e:
        shutil.rmtree(partial, ignore_errors=True)
        remove_created(created)
        if isinstance(e, OSError):
            raise storage_error(e, target) from None
        raise
    return target


def shipped_record(meta: dict, run: Path, ist: dict, method: str, storage: dict | None = None) -> dict:
    """The subspace's ``subspace.json`` as it ships: as saved, except that the bank it was fitted to is named from
    the run's folder (``smol-catalog/bank``) instead of by this machine's absolute path, and with the recipe's IST
    settings (``ist``) under ``subspace_tune``: what ``taskspace subspace-tune`` trains with in it by default; a
    lighter storage (:func:`stored_tensors`) under ``shipped``, without the down-projections' configs when it leaves
    them out."""
    try:
        SubspaceTuneConfig(task="", method=method, data_dir="").updated(ist)
    except ConfigError as e:
        raise ConfigError(f"the recipe's ist section: {e}") from None
    info = meta.get("info", {})
    meta = {**meta, "subspace_tune": ist}
    if storage:
        meta["shipped"] = storage
        if storage["decoder_only"]:
            meta["methods"] = {m: {**v, "down": None} for m, v in meta["methods"].items()}
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
    unless it decodes as the run's folder does (exactly, or within ``HALF_TOLERANCE`` where it is stored in
    float16). Returns what was checked."""
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
    storage = read_json(out / name / SUBSPACE_JSON).get("shipped", {})
    rounded = storage.get("dtype", "float32") != "float32"
    z = torch.randn(ERROR_DRAWS, shipped.d, generator=torch.Generator().manual_seed(1))
    worst = 0.0
    with torch.no_grad():
        for method in source.methods:
            ours, theirs = shipped.theta(method, z), source.theta(method, z)
            error = ((ours - theirs).norm(dim=-1) / (theirs - source[method].anchor).norm(dim=-1)).max().item()
            worst = max(worst, error)
            if not (torch.equal(ours, theirs) or rounded and error <= HALF_TOLERANCE):
                raise ConfigError(f"--check: builtin:{name} decodes {method} otherwise than {folder}"
                                  + (f" (relative error {error:.1e}, above {HALF_TOLERANCE})" if rounded else ""))
    how = f"within {worst:.1e} relative ({storage['dtype']})" if rounded else "exactly"
    return (f"check: builtin:{name} loads on {backbone.name} ({backbone.template} template) and decodes as {folder} "
            f"does, {how}; `taskspace subspaces` shows it as: {listed.summary}")


def recipe_command(args: argparse.Namespace) -> str:
    """The command that made the run: the runner, the recipe file, its output folder, report and part."""
    out = Path(args.run).parent if args.part else Path(args.run)
    report = shown(args.report) if args.report else f"reports/{Path(args.recipe).stem}.md"
    part = f" --part {args.part}" if args.part else ""
    return f"python recipes/smol.py {shown(args.recipe)} --out {shown(out)} --report {report}{part}"


def source_arguments(ap: argparse.ArgumentParser) -> None:
    """The options naming a finished run and how its subspaces ship (shared with recipes/ship_choice.py)."""
    ap.add_argument("--run", required=True, help="the recipe's output folder (recipes/smol.py --out)")
    ap.add_argument("--recipe", required=True, help="the recipe file that made the run (recipes/*.yaml)")
    ap.add_argument("--part", help="the part of a recipe file with parts (the run folder is OUT/PART)")
    ap.add_argument("--decoder-only", action="store_true",
                    help="leave out the down-projection (the encoder of solutions: tuning in it only decodes)")
    ap.add_argument("--dtype", choices=list(DTYPES), default="float32",
                    help="store the projections' weights in this precision (default: float32, as saved)")
    ap.add_argument("--check", action="store_true", help="then load the backbone as the run recorded it and the "
                                                         "built-in through builtin:NAME, and compare it with the run's")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source_arguments(ap)
    ap.add_argument("--report", help="the report the recipe wrote, for the card's command (default: "
                                     "reports/<recipe name>.md)")
    ap.add_argument("--subspace", required=True,
                    help="the run's subspace folder: ipt-d<d>, linear-d<d> or random-ae-d<d>")
    ap.add_argument("--name", required=True, help="the built-in's name (builtin:NAME)")
    ap.add_argument("--out", default=str(REPO / "src" / "taskspace" / "builtin"),
                    help="the folder of the built-ins (default: the package's, src/taskspace/builtin)")
    args = ap.parse_args(argv)
    run, out = Path(args.run), Path(args.out)
    if not run.is_dir():
        raise DataError("no such run folder", run)
    cfg = recipe_part(args.recipe, args.part, run.parent if args.part else run)
    created = [p for p in (out, *out.parents) if not p.exists()]
    target = ship(run, args.subspace, args.name, out, cfg, args.recipe, recipe_command(args), args.decoder_only,
                  args.dtype)
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
