"""``--config FILE`` and ``--set KEY=VALUE`` on every command.

A config file is YAML (or JSON) holding a command's options by their names (``lr: 0.3``, ``data_dir: ...``), with
``train``, ``columns``, ``method_options`` and ``backbone_options`` as nested sections, as a run records them. The
``config.json`` of a tune or subspace-tune run and the ``bank.json`` of a bank are accepted as they are: their
``run`` (or ``spec``) section holds the settings, so ``taskspace tune --config RUN/config.json`` repeats a run.

Precedence, lowest first: the library's defaults, the file, the ``--set`` overrides (dotted keys reach into the
sections: ``--set train.lr=0.01``, ``--set method_options.r=4``), then the options typed on the command line.
The file's values become the command's argparse defaults, so they are parsed and checked exactly as typed options
are, and every later step (presets, method options, the library config) sees them the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError, did_you_mean

#: Keys of a record that the command line cannot set: accepted at the default of the command's config, else refused.
_RECORD_ONLY = ("test_sample_seed", "zero_shot")
#: Top-level sections of a taskspace record that describe rather than configure (the settings are under run / spec).
_DESCRIPTIVE = ("backbone", "method", "data", "data_digest", "subspace")


def split_config_args(argv: Sequence[str]) -> tuple[str | None, list[str], list[str]]:
    """``--config FILE`` and every ``--set KEY=VALUE`` taken out of ``argv``; returns (file, sets, the rest)."""
    config, sets, rest = None, [], []
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        name, eq, value = item.partition("=")
        if name in ("--config", "--set"):
            if not eq:
                if i + 1 >= len(items):
                    raise ConfigError(f"{name}: expected a value")
                value, i = items[i + 1], i + 1
            if name == "--config":
                if config is not None:
                    raise ConfigError("--config: given twice; expected one file (use --set for single values)")
                config = value
            else:
                sets.append(value)
        else:
            rest.append(item)
        i += 1
    return config, sets, rest


def read_config_file(path: str) -> dict[str, Any]:
    import yaml

    file = Path(path)
    if not file.is_file():
        found = "expected a file, found a folder" if file.is_dir() else "file not found"
        raise ConfigError(f"--config {path}: {found}")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path}: not a UTF-8 text file; expected YAML or JSON") from None
    except OSError as e:
        raise ConfigError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"--config {path}{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of option names to values, found a "
                          f"{type(data).__name__}")
    return data


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` overrides as a nested mapping (``train.lr=0.01`` -> ``{"train": {"lr": 0.01}}``); values are
    read as YAML scalars (numbers, true/false, null, [lists])."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} is a value, not a section")
        node[parts[-1]] = value
    return out


def settings_of(data: dict[str, Any]) -> dict[str, Any]:
    """The settings part of a file: a record's ``run`` (with its subspace's path) or ``spec``, else the file."""
    if isinstance(data.get("run"), dict):
        out = dict(data["run"])
        if isinstance(data.get("subspace"), dict) and "path" in data["subspace"]:
            out.setdefault("subspace", data["subspace"]["path"])
        return out
    if isinstance(data.get("spec"), dict):
        return dict(data["spec"])
    return {k: v for k, v in data.items()
            if k not in ("taskspace_version", "format") and not (k in _DESCRIPTIVE and isinstance(v, dict))}


def _text(value: Any, none: str = "none") -> str:
    """A value as the command line spells it (``none`` for an option's None; ``null`` inside KEY=VALUE options,
    which are read as JSON when the option's default is None)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return none if value is None else str(value)


def flatten(settings: dict[str, Any], where: str) -> dict[str, Any]:
    """Settings as argparse destinations: nested sections spread out, option dicts as ``KEY=VALUE`` lists."""
    out: dict[str, Any] = {}
    later: dict[str, Any] = {}
    for key, value in settings.items():
        key = str(key).replace("-", "_")
        if key in ("train", "columns") and isinstance(value, dict):
            # train.lr null is "the method's default rate" (as a bank records it): the same as leaving it out
            later.update({str(k).replace("-", "_"): v for k, v in value.items() if not (k == "lr" and v is None)})
        elif key == "method_options" and isinstance(value, dict):
            out.setdefault("opt", []).extend(f"{k}={_text(v, 'null')}" for k, v in value.items())
        elif key == "methods" and isinstance(value, dict):  # a bank: method -> options
            out["methods"] = list(value)
            for method, options in value.items():
                if not isinstance(options, dict):
                    raise ConfigError(f"{where}: methods.{method}: expected a mapping of options")
                out.setdefault("opt", []).extend(f"{method}.{k}={_text(v, 'null')}" for k, v in options.items())
        elif key == "lr" and isinstance(value, dict):  # a bank: method -> learning rate
            out["method_lr"] = [f"{m}={_text(v)}" for m, v in value.items()]
        elif key == "backbone_options" and isinstance(value, dict):
            for k, v in value.items():
                if k in ("family", "decode"):
                    out[k] = v
                else:
                    out.setdefault("backbone_opt", []).append(f"{k}={_text(v, 'null')}")
        else:
            out[key] = value
    for key, value in later.items():  # a section's key never replaces the same key given at the top (seed)
        out.setdefault(key, value)
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _convert(action: argparse.Action, value: Any, where: str) -> Any:
    name = action.option_strings[-1] if action.option_strings else action.dest
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {action.dest}: expected true or false, got {value!r}")
        return value  # the destination holds the setting itself (--no-X stores False in X)
    many = action.nargs in ("+", "*") or isinstance(action, argparse._AppendAction)
    items = value if isinstance(value, list) else ([value] if many else None)
    if items is None:
        items = [value]
    elif not many:
        raise ConfigError(f"{where}: {action.dest}: expected one value for {name}, got a list")
    converted = []
    for item in items:
        if action.type is not None and item is not None:
            try:
                item = action.type(_text(item) if not isinstance(item, str) else item)
            except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
                raise ConfigError(f"{where}: {action.dest}: {item!r} is not valid for {name} ({e})") from None
        if action.choices is not None and item not in action.choices:
            raise ConfigError(f"{where}: {action.dest}: {item!r}; expected one of "
                              f"{', '.join(map(str, action.choices))}")
        converted.append(item)
    return converted if many else converted[0]


def _train_defaults() -> dict[str, Any]:
    from ..train import TrainConfig

    return TrainConfig().to_dict()


def apply_config(parser: argparse.ArgumentParser, argv: Sequence[str], record_defaults) -> list[str]:
    """Take ``--config`` and ``--set`` out of ``argv`` and make their values the chosen command's defaults;
    returns the rest of ``argv``. ``record_defaults(command)`` gives the defaults of the record-only keys."""
    config, sets, rest = split_config_args(argv)
    if config is None and not sets:
        return rest
    command = next((a for a in rest if not a.startswith("-")), None)
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if command not in commands:
        return rest  # argparse says what is wrong with the command
    sub = commands[command]
    data = settings_of(read_config_file(config)) if config is not None else {}
    data = _merge(data, parse_set(sets))
    where = f"--config {config}" if config is not None else "--set"
    values = flatten(data, where)
    actions = {a.dest: a for a in sub._actions if a.option_strings and a.dest != "help"}
    defaults_of_record = record_defaults(command)
    resolved: dict[str, Any] = {}
    section_defaults = _train_defaults()
    for key, value in values.items():
        action = actions.get(key)
        if action is None:
            if key in section_defaults and value == section_defaults[key]:
                continue  # a training setting this command sets itself (a bank's per-entry seed), at its default
            if key in _RECORD_ONLY and key in defaults_of_record:
                if value != defaults_of_record[key]:
                    raise ConfigError(f"{where}: {key}: {value!r} cannot be set from the command line (only "
                                      f"{defaults_of_record[key]!r}); use the Python API")
                continue
            raise ConfigError(f"{where}: {key!r} is not an option of taskspace {command}; "
                              + (did_you_mean(key, actions) or f"expected one of {', '.join(sorted(actions))}"))
        resolved[key] = _convert(action, value, where)
        action.required = False  # given by the file: no longer needed on the command line
    sub.set_defaults(**resolved)
    return rest
