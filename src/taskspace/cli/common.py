"""What every command shares: option parsing, the backbone, data, training and evaluation options, output folders.

A command's defaults are the library's: options derived from a config's fields (:func:`taskspace.config.add_arguments`)
stay out of the namespace unless given, and :func:`taskspace.config.from_args` lays what was given over the
library config.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

from ..backbones import DEFAULT_BACKBONE, settled_dtype_option
from ..config import Config, add_arguments
from ..errors import ConfigError, did_you_mean
from ..train import TrainConfig

# ----------------------------------------------------------------------------------------------------------------
# key=value options


def parse_options(pairs: Sequence[str] | None, fields: dict[str, Any] | None, what: str) -> dict[str, Any]:
    """``key=value`` strings to a dict, converting each value to the type of the field's default.

    ``fields`` maps option names to default values (None: accept any name and guess the type).
    """
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"{what} {pair!r}: expected key=value")
        key, raw = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        if fields is not None and key not in fields:
            raise ConfigError(f"{what} {key!r}: unknown option; "
                              + (did_you_mean(key, fields) or f"valid: {', '.join(sorted(fields)) or '(none)'}"))
        default = None if fields is None else fields[key]
        out[key] = _convert(raw.strip(), default, f"{what} {key}")
    return out


def _convert(raw: str, default: Any, where: str) -> Any:
    try:
        if isinstance(default, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            value = float(raw)
            if not math.isfinite(value):
                raise ConfigError(f"{where}={raw!r}: expected a finite number")
            return value
        if isinstance(default, tuple):
            return tuple(x.strip() for x in raw.split(",") if x.strip())
        if default is None:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                try:
                    value = float(raw)  # nan, inf: numbers that JSON does not spell this way
                except ValueError:
                    return raw
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{where}={raw!r}: expected a finite number")
            return value
        return raw
    except ConfigError:
        raise
    except ValueError:
        raise ConfigError(f"{where}={raw!r}: expected a value like {default!r}") from None


def method_fields(method: str) -> dict[str, Any]:
    from ..deltas import method_class

    return {name: default for name, default, _ in method_class(method).config_class.help()}


def method_options_from(pairs: list[str] | None, methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--opt METHOD.key=value`` (several methods) to per-method option dicts."""
    out: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for pair in pairs or []:
        head, _, rest = pair.partition(".")
        if head not in out or not rest:
            raise ConfigError(f"--opt {pair!r}: expected METHOD.key=value with METHOD one of {list(methods)}")
        out[head].update(parse_options([rest], method_fields(head), f"--opt {head}."))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Backbones, data, output folders


def backbone_options_from(args: argparse.Namespace) -> dict[str, Any]:
    options = parse_options(args.backbone_opt, None, "--backbone-opt")
    if args.family:
        options["family"] = args.family
    if getattr(args, "decode", None):
        options["decode"] = args.decode
    return settled_dtype_option(options)


def load_backbone_from(args: argparse.Namespace, recorded_in: Path | None = None):
    """The backbone named by ``--backbone``; without one, the backbone an artefact's JSON file (a bank's or a
    subspace's) recorded, with the settings it was scored with there (template, lengths, decode protocol, where
    long inputs are cut) under the options given, else the default backbone."""
    from ..backbones import load_backbone, recorded_settings
    from ..store import read_json

    name, options = args.backbone, backbone_options_from(args)
    if name is None and recorded_in is not None:
        recorded = read_json(recorded_in)["backbone"]
        name, options = recorded["name"], {**recorded_settings(recorded), **options}
    return load_backbone(name or DEFAULT_BACKBONE, **options)


def output_folder(path: str | Path, option: str) -> Path:
    """An output folder named by ``option``, checked before anything is loaded or written (it is created later,
    when needed): refused when a file stands there or on its way, or when the folder it would be made in (or it
    itself) cannot be written (no permission, a read-only file system)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: expected a folder, found a file")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option} {path}: {existing} is a file; expected a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: cannot write in {existing} (no permission, or a read-only file "
                          "system); choose a folder you can write")
    return path


def output_file(path: str | Path, option: str) -> Path:
    """An output file named by ``option``, checked before anything is loaded: refused when a folder stands there,
    or when its folder cannot be written (:func:`output_folder`)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: expected a file, found a folder")
    output_folder(path.parent, f"{option}'s folder")
    return path


def data_dir_from(args: argparse.Namespace) -> str:
    """The data folder as an absolute path (recorded in artefacts, which must work from any directory)."""
    from ..tasks import default_data_dir
    from ..tasks.sources import HUB_PREFIX

    if args.data_dir and args.data_dir.startswith(HUB_PREFIX):
        return args.data_dir
    return str(Path(args.data_dir or default_data_dir()).expanduser().resolve())


def tasks_from(args: argparse.Namespace, parts: list[str]) -> list[str]:
    from ..tasks import CATALOG
    from ..tasks.formats import read_split_file

    if args.tasks:
        return list(args.tasks)
    if not args.split:
        raise ConfigError("name the tasks: --tasks T1 T2 ... or --split FILE.json")
    split = read_split_file(args.split, known_tasks=CATALOG)
    missing = [p for p in parts if p not in split]
    if missing:
        raise ConfigError(f"{args.split}: no {missing} list in this split file")
    return [t for p in parts for t in split[p]]


def known_tasks(tasks: list[str], data_dir: str) -> None:
    """Every task has files in the data folder (checked before anything is loaded or written)."""
    from ..tasks import CATALOG, available_tasks
    from ..tasks.catalog import close_task_names

    present = set(available_tasks(data_dir))
    for task in tasks:
        if task not in present:
            close = [c for c in close_task_names(task, sorted(present | set(CATALOG))) if c != task]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"task {task!r} has no files in the data folder {data_dir}{hint}")


def write_tables(tables, folder: Path, stem: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, table in enumerate(tables):
        table.write(folder / (stem if i == 0 else f"{stem}_{i}"))
    for table in tables:
        print(table.markdown())


# ----------------------------------------------------------------------------------------------------------------
# Arguments


def stop_note(scores: dict) -> str | None:
    """One line for a run that stopped early without its dev score ever rising above its start's (an intrinsic
    vector or a prompt still looking for the answers' form: its loss may still be falling), naming how to train on;
    None for any other run."""
    start = ((scores.get("zero_shot") or {}).get("init") or {}).get("dev")
    if not scores.get("stopped_early") or start is None or scores.get("dev") is None or scores["dev"] > start:
        return None
    return (f"note: stopped early at step {scores['steps']} with dev never above its start ({100 * start:.2f}); "
            "--patience none trains all --steps, or raise --patience")


def method_names() -> list[str]:
    from ..deltas import METHODS

    return list(METHODS)


def add_backbone_args(p: argparse.ArgumentParser, *, default: str | None = DEFAULT_BACKBONE,
                      shown: str | None = None) -> None:
    """``--backbone`` (``shown``: what its help says the default is, when ``default`` is None) and the backbone's
    options."""
    if shown is None:
        shown = default if default is not None else f"the one the artefact records, else {DEFAULT_BACKBONE}"
    p.add_argument("--backbone", default=default,
                   help=f"smollm2 (SmolLM2-135M-Instruct), minilm (all-MiniLM-L6-v2), a model folder or a hub name "
                        f"(default: {shown})")
    p.add_argument("--family", choices=["seq2seq", "causal", "encoder"], help="override the backbone family")
    p.add_argument("--decode", choices=["generate", "rank"],
                   help="generate: answer every task by generated text scored as a string (the papers' protocol; "
                        "the default of seq2seq and causal backbones); rank: choose the most likely option of "
                        "tasks with options (the only mode of encoder backbones)")
    p.add_argument("--backbone-opt", action="append", metavar="KEY=VALUE",
                   help="backbone option, e.g. dtype=auto (bfloat16 where the hardware runs it fast; the default is "
                        "float32 on the CPU, the same numbers on every host, and bfloat16 on a CUDA GPU that "
                        "supports it), dtype=bfloat16, max_input_length=256, attn_implementation=eager (sdpa, flex_attention, "
                        "flash_attention_2), dropout=true (the frozen model's dropout in training steps; default "
                        "off), similarity_scale=20, label_smoothing=0.1")


def add_data_args(p: argparse.ArgumentParser, config: type[Config], defaults: Config | None = None, *,
                  own_data: bool = False, test: bool = True) -> None:
    """``--data-dir`` and the config's data fields (``--k``, ``--data-seed``, ...); with ``own_data``, the column
    options of your own files and ``--metric``; without ``test`` (a command that scores no test split), no
    ``--pool-test``."""
    from ..tasks.sources import Columns

    p.add_argument("--data-dir", help="folder of task folders, or one task's own data (a folder with train and dev "
                                      "files with a header, or a saved datasets dataset), or hub:NAME[:CONFIG] "
                                      "(default: $TASKSPACE_DATA)")
    if own_data:  # before the data fields, whatever the order of the config's fields
        add_arguments(p, config, defaults=defaults, only=("metric",))
    add_arguments(p, config, defaults=defaults, types={"resample_k": int},
                  only=("k", "data_seed", "resample", "resample_k") + (("pool_test",) if test else ()))
    if own_data:
        add_arguments(p, Columns)


#: The help of ``--split``: what a split file holds.
SPLIT_FILE_HELP = "split file {'train': [...], 'dev': [...], 'test': [...]}"


def add_tasks_args(p: argparse.ArgumentParser, *, what: str = "task names", split_help: str = SPLIT_FILE_HELP,
                   parts: Sequence[str] | None = None, parts_help: str = "which lists of the split file") -> None:
    """The tasks of a command that takes several (read by :func:`tasks_from`): ``--tasks``, or ``--split`` and,
    where a command reads more than one list of the split file, ``--parts`` (``parts``: the default lists)."""
    p.add_argument("--tasks", nargs="*", help=f"{what} (or --split)")
    p.add_argument("--split", help=split_help)
    if parts is not None:
        p.add_argument("--parts", nargs="+", default=list(parts), help=parts_help)


def add_runs_out_args(p: argparse.ArgumentParser, run_name_help: str) -> None:
    """Where a command writes its run directory: ``--out`` (the parent folder), ``--run-name``, ``--overwrite``."""
    p.add_argument("--out", default="runs", help="parent folder of run directories (default: runs)")
    p.add_argument("--run-name", help=run_name_help)
    p.add_argument("--overwrite", action="store_true", help="delete an existing run directory of that name first")


def add_train_args(p: argparse.ArgumentParser, defaults: TrainConfig | None = None, *,
                   default_text: dict[str, str] | None = None, exclude: Sequence[str] = ()) -> None:
    """The training options, one per field of :class:`TrainConfig` (``--seed`` belongs to the command's config)."""
    add_arguments(p, TrainConfig, defaults=defaults, exclude=("seed", *exclude), default_text=default_text or {},
                  types={"patience": int, "micro_batch_size": int, "warmup_fraction": float})


def add_eval_args(p: argparse.ArgumentParser, config: type[Config], defaults: Config) -> None:
    """How a run is scored: ``--eval-batch-size`` and ``--max-test-examples`` (fields of
    :class:`taskspace.tuning.FewShotRunConfig`)."""
    add_arguments(p, config, defaults=defaults, only=("eval_batch_size", "max_test_examples"))


def add_preset_arg(p: argparse.ArgumentParser) -> None:
    from ..presets import PRESETS

    p.add_argument("--preset", choices=list(PRESETS),
                   help="the papers' settings for this stage (see taskspace.presets), under the options given here")


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (``taskspace COMMAND: error: ...``, exit status 2) like taskspace's own;
    ``--help`` still shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")
