"""Keep a long recipe run's finished work in the repository, so that a lost machine costs only its unfinished runs.

    python recipes/keep_runs.py save runs/smol-catalog kept/smol-catalog
    python recipes/keep_runs.py restore kept/smol-catalog runs/smol-catalog

A stage of recipes/smol.py can outlast a session (the catalog's bank: 83 runs, about six hours on 2 cores), and a
session's machine may be gone by the next one: only what is committed survives. ``save`` copies from a run folder (a
runner's ``--out``) every file of each finished run (a folder holding ``scores.json``, written last) but its
checkpoint, lock and predictions (they quote the task data), and the run's records (the other JSON files:
``stages.json``, ``results.json``, a bank's ``bank.json``; not those of a folder holding tensors, a fitted
subspace's, useless without them), into ``KEPT``, a folder to commit. A finished run with a file over
``--max-file-bytes`` (default 1 MB: a prompt run's theta is about 92 KB; an adapter, prefix or LoRA theta is
megabytes) is not kept, and the line says which. Fitted subspaces are not runs and are never kept: they are fitted
again from the kept bank.

``restore`` copies a kept folder back into a run folder (on a fresh machine, before the same recipe command
resumes): every kept file the run folder lacks. A file present in both with other content is refused in one line
(exit status 2) before anything is copied: the run folder has moved on since it was kept, and is the truth.
Restored runs are verified by the runner as any finished run is (their recorded configuration, backbone and data
digests against the recipe's), so a kept run is never reused for other settings.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from pathlib import Path

from taskspace.errors import DataError
from taskspace.runs import SCORES

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the recipes' shared modules
from recipe_common import run_main  # noqa: E402

#: What a run folder holds that is never kept: the resume state of an unfinished run, the runner's lock, and the
#: predictions, which quote the task data's inputs (the data is never copied into the repository; nothing reads them
#: back: a restored run lacks them).
NOT_KEPT = {"checkpoint", ".lock", "predictions"}
#: The file every run folder holds from its start (its configuration; taskspace.runs).
CONFIG = "config.json"


def finished_runs(out: Path) -> list[Path]:
    """The finished run folders under ``out`` (a folder holding ``scores.json``), sorted."""
    return sorted(p.parent for p in out.rglob(SCORES) if not NOT_KEPT & set(p.relative_to(out).parts))


def run_files(run: Path) -> list[Path]:
    """A finished run's files, but those :data:`NOT_KEPT`."""
    return sorted(p for p in run.rglob("*") if p.is_file() and not NOT_KEPT & set(p.relative_to(run).parts))


def records(out: Path) -> list[Path]:
    """The JSON files under ``out`` outside its run folders (finished or not: a folder holding a run's
    ``config.json``) and checkpoints, but those of a folder that holds tensors (a fitted subspace's
    ``subspace.json`` is useless without its ``subspace.safetensors``)."""
    def in_run(f: Path) -> bool:
        return any((out / folder / CONFIG).is_file() for folder in f.relative_to(out).parents)

    return [f for f in sorted(out.rglob("*.json")) if not NOT_KEPT & set(f.relative_to(out).parts)
            and not in_run(f) and not any(f.parent.glob("*.safetensors"))]


def save(out: Path, kept: Path, max_file_bytes: int) -> str:
    """Copy ``out``'s finished runs (each file at most ``max_file_bytes``) and its records into ``kept``;
    return the line that says what was kept and what was not."""
    if not out.is_dir():
        raise DataError("no such run folder (expected a recipe's --out)", out)
    copied, runs, too_big = 0, 0, []
    for run in finished_runs(out):
        files = run_files(run)
        if any(f.stat().st_size > max_file_bytes for f in files):
            too_big.append(str(run.relative_to(out)))
            continue
        runs += 1
        for f in files:
            copied += _copy(f, kept / f.relative_to(out))
    kept_records = records(out)
    for f in kept_records:
        copied += _copy(f, kept / f.relative_to(out))
    line = (f"{out}: {runs} finished runs and {len(kept_records)} records kept in {kept} ({copied} files new or "
            "changed)")
    if too_big:
        line += (f"; not kept, a file over {max_file_bytes} bytes: {len(too_big)} runs "
                 f"({', '.join(too_big[:3])}{', ...' if len(too_big) > 3 else ''})")
    return line


def _copy(src: Path, dst: Path) -> int:
    """Copy ``src`` to ``dst`` unless it already holds the same bytes; 1 if copied."""
    if dst.is_file() and filecmp.cmp(src, dst, shallow=False):
        return 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    return 1


def restore(kept: Path, out: Path) -> str:
    """Copy every file of ``kept`` that ``out`` lacks; refuse (before copying) a file both hold with other
    content."""
    if not kept.is_dir():
        raise DataError("no such kept folder (expected what `keep_runs.py save` wrote)", kept)
    files = sorted(p for p in kept.rglob("*") if p.is_file())
    for f in files:
        target = out / f.relative_to(kept)
        if target.exists() and not (target.is_file() and filecmp.cmp(f, target, shallow=False)):
            raise DataError(f"differs from the kept {f}: the run folder has moved on since it was kept (nothing "
                            "restored)", target)
    missing = [f for f in files if not (out / f.relative_to(kept)).exists()]
    for f in missing:
        _copy(f, out / f.relative_to(kept))
    runs = sum(1 for f in missing if f.name == SCORES)
    return f"{out}: {len(missing)} files restored from {kept}, {runs} finished runs among them"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("save", help="copy a run folder's finished runs and records into a folder to commit")
    s.add_argument("out", type=Path, help="the run folder (a recipe's --out)")
    s.add_argument("kept", type=Path, help="the folder to commit")
    s.add_argument("--max-file-bytes", type=int, default=1_000_000,
                   help="a finished run with a larger file is not kept (default: 1 MB)")
    r = sub.add_parser("restore", help="copy a kept folder back into a run folder")
    r.add_argument("kept", type=Path)
    r.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    print(save(args.out, args.kept, args.max_file_bytes) if args.command == "save" else restore(args.kept, args.out))


if __name__ == "__main__":
    run_main(main)
