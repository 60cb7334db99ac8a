"""What the recipe runners share: stage timing, stage configs from YAML settings, fitted-or-loaded subspaces, and a
score's printed form."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from taskspace.errors import ConfigError, DataError, Interrupted, TaskspaceError, did_you_mean
from taskspace.store import read_json, write_json
from taskspace.subspace import FitData, Subspace, fit_subspace
from taskspace.train import TrainConfig


#: The time this process spent paused by SIGTSTP (``kill -TSTP PID``, the way to pause a long run while something
#: else uses the cores; ``kill -CONT PID`` resumes it), counted by :func:`run_main`'s handlers.
_PAUSED = {"seconds": 0.0, "since": None}


def _pause(signum, frame) -> None:
    _PAUSED["since"] = time.time()
    os.kill(os.getpid(), signal.SIGSTOP)  # returns once SIGCONT has resumed the process


def _resumed(signum, frame) -> None:
    if _PAUSED["since"] is not None:
        _PAUSED["seconds"] += time.time() - _PAUSED["since"]
        _PAUSED["since"] = None


def now() -> float:
    """Wall-clock seconds less the time this process was paused by SIGTSTP: the clock of a stage's or a run's
    recorded time. (A process stopped by SIGSTOP cannot know it was; that time counts.)"""
    return time.time() - _PAUSED["seconds"]


class Stages:
    """Wall-clock seconds of each stage, less the time the process was paused (:func:`now`). With a ``path`` (a
    JSON file), they accumulate over the invocations that ran the stage and are saved after each, an interrupted one
    included (Ctrl-C, or SIGTERM under :func:`run_main`), so that the total is the time the stage cost; without one,
    they cover this invocation."""

    def __init__(self, path: Path | None = None):
        self.path = path
        self.seconds: dict[str, float] = read_json(path) if path is not None and path.is_file() else {}

    def run(self, name: str, fn, *args, **kwargs):
        t = now()
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
        finished = False
        try:
            out = fn(*args, **kwargs)
            finished = True
        finally:
            spent = now() - t
            self.seconds[name] = self.seconds.get(name, 0.0) + spent
            if self.path is not None:
                write_json(self.path, self.seconds)
            print(f"[{time.strftime('%H:%M:%S')}] {name}: {spent / 60:.1f} min"
                  f"{'' if finished else ' (interrupted)'}", flush=True)
        return out


def fmt(x: float | None) -> str:
    """A score (a fraction) as a percentage with one decimal; "–" for none."""
    return "–" if x is None else f"{100 * x:.1f}"


def train_config(d: dict[str, Any]) -> TrainConfig:
    return TrainConfig.from_dict(d, progress=False)


def stage_config(cls, settings: dict[str, Any], **fixed: Any):
    """A stage's library config from its YAML settings (unknown keys are refused by name), progress bars off."""
    settings = {**settings, **fixed}
    if "train" in settings:
        settings["train"] = train_config(settings["train"])
    return cls.from_dict(settings)


def fit_saved(name: str, config, data: FitData, folder: Path) -> Subspace:
    """A finder's subspace in ``folder``: fitted (resumably) and saved, or loaded when it is already there; one saved
    from other settings or other training tasks (a recipe edited since) is refused, naming what differs."""
    if (folder / "subspace.json").is_file():
        space = Subspace.load(folder, data.backbone)
        saved, wanted = space.info.get("config"), config.identity()
        if saved is not None and saved != wanted:
            differ = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
            raise ConfigError(f"{folder} was fitted with other settings ({', '.join(differ)} differ from the "
                              "recipe's); remove the folder to fit it again")
        if "tasks" in space.info and data.tasks and list(space.info["tasks"]) != list(data.tasks):
            raise ConfigError(f"{folder} was fitted on other training tasks than the recipe's; remove the folder to "
                              "fit it again")
        return space
    return fit_subspace(name, data, config=config, out=folder)


def recipe_arguments(description: str, *, figures: bool = False, parts: bool = False) -> argparse.Namespace:
    """The runners' command line: the recipe file, ``--out``, ``--report``, ``--data-dir``, ``--report-only``, with
    ``figures`` ``--no-png``, and with ``parts`` ``--part`` (repeatable) and ``--backbone``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("config")
    ap.add_argument("--out", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "crossfit"))
    ap.add_argument("--report-only", action="store_true",
                    help="write the report again from the run's results.json and stages.json, without training")
    if figures:
        ap.add_argument("--no-png", action="store_true",
                        help="the report and its CSV without figures (no matplotlib needed)")
    if parts:
        ap.add_argument("--part", action="append", metavar="NAME",
                        help="run only this part of a file with 'parts' (repeatable; the report still covers every "
                             "part that has results)")
        ap.add_argument("--backbone", metavar="PATH",
                        help="the backbone of every part that runs, in place of the file's (a local copy of the "
                             "model the part names, e.g. BART-base or T5-base; the part's sizes are that model's)")
    return ap.parse_args()


def sweep_arguments(description: str, *, steps: int, batch_size: int, eval_every: int) -> argparse.ArgumentParser:
    """The sweeps' command line (templates.py, budget.py, lora_shape.py): ``--out``, ``--doc``, ``--backbone``,
    ``--data-dir``, the budget (``--steps``, ``--batch-size``, ``--eval-every``, defaulting to the given ones),
    ``--max-test-examples`` and ``--report-only``; the caller adds its own and parses."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", required=True)
    ap.add_argument("--doc", required=True)
    ap.add_argument("--backbone", default="smollm2")
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "crossfit"))
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--batch-size", type=int, default=batch_size)
    ap.add_argument("--eval-every", type=int, default=eval_every)
    ap.add_argument("--max-test-examples", type=int, default=100)
    ap.add_argument("--report-only", action="store_true")
    return ap


def run_main(main) -> None:
    """Run a runner's ``main``; bad input (a misspelt key, a missing file, an unknown task) or a file that cannot be
    written ends it with one line on stderr and exit status 2, as taskspace's commands do, and Ctrl-C with one
    line saying what was saved and exit status 130 (running the same command resumes). SIGTERM ends it as Ctrl-C
    does, through ``finally`` blocks (a stage's time so far is kept). SIGTSTP pauses it (SIGCONT resumes) and the
    pause is left out of the recorded times (:func:`now`)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    signal.signal(signal.SIGTSTP, _pause)
    signal.signal(signal.SIGCONT, _resumed)
    name = Path(sys.argv[0]).name
    try:
        main()
    except TaskspaceError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:
        saved = e.saved if isinstance(e, Interrupted) else "finished stages and runs are kept in --out"
        print(f"{name}: interrupted; {saved}; run the same command to resume", file=sys.stderr)
        sys.exit(130)


def read_recipe(path: str | Path) -> dict:
    """A recipe file (YAML) as a mapping; a missing or malformed file is refused with its name."""
    import yaml

    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(f"cannot read the recipe: {e.strerror}", path) from None
    except yaml.YAMLError as e:
        raise DataError(f"not valid YAML: {str(e).splitlines()[0]}", path) from None
    if not isinstance(cfg, dict):
        raise DataError("expected a mapping of settings", path)
    return cfg


def require(cfg: dict, keys, where: str) -> None:
    """Refuse a recipe (part) that lacks one of ``keys``, naming it."""
    for key in keys:
        if key not in cfg:
            raise ConfigError(f"{where}: the recipe has no {key!r} (see the runner's docstring for its keys)")


def refuse_unknown(cfg: dict, known, where: str) -> None:
    """Refuse a recipe section with a key outside ``known``, naming the first one (alphabetically)."""
    unknown = sorted(set(cfg) - set(known))
    if unknown:
        hint = did_you_mean(unknown[0], known)
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}" + (f"; {hint}" if hint else ""))


def record_path(doc: str | Path) -> Path:
    """The committed results behind a document: ``docs/backbones.md``'s are ``docs/backbones.json``."""
    return Path(doc).with_suffix(".json")


def read_record(path: Path, settings: str) -> dict:
    """The committed results (``{"settings", "results", "recovered"}``), or an empty record where there are none;
    refused when they were made with other settings than ``settings``."""
    if not path.is_file():
        return {"settings": settings, "results": {}}
    record = read_json(path)
    if record.get("settings") != settings:
        raise ConfigError(f"{path}: its results were made with other settings ({record.get('settings')}); move it "
                          "aside to make the document afresh")
    return record
