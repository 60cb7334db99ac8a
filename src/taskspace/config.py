"""One configuration convention for every stage of taskspace.

A configuration is a dataclass deriving from :class:`Config` whose fields are declared with :func:`option`:
a default, a help text, and what a valid value is. From that one declaration come

* validation at construction (``ConfigError`` naming the option as the command line spells it, ``--max-grad-norm``);
* ``to_dict`` / ``from_dict`` (JSON-ready, nested configurations included; unknown keys are refused, a misspelt
  one with the close names);
* ``identity()``: the settings that define a result, i.e. ``to_dict`` without the fields marked ``runtime``
  (how progress is shown, whether a checkpoint is kept), in one place;
* the command-line options of every command (:func:`add_arguments`), whose defaults are *not* repeated by the
  command line: an option that is not given keeps the library's default, so the CLI and the library cannot drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any, Callable, Iterable, Mapping, TypeVar

from .errors import ConfigError, did_you_mean

C = TypeVar("C", bound="Config")

#: A check returns None when the value is valid, else what was expected ("a positive number").
Check = Callable[[Any], "str | None"]


def option(default: Any = dataclasses.MISSING, help: str = "", *, check: Check | None = None,
           choices: Iterable[Any] | None = None, runtime: bool = False, factory: Callable[[], Any] | None = None,
           nullable: bool | None = None, cli: bool = True, since: str | None = None) -> Any:
    """A configuration field.

    ``check`` validates a value (returning what was expected, or None); ``choices`` lists the valid values (of
    each item, for a tuple field); ``nullable`` accepts None, meaning "off" or "unset" (by default: when the
    default is None); ``runtime`` marks a field that does not change results (left out of
    :meth:`Config.identity`); ``factory`` builds a mutable or nested default; ``cli=False`` keeps a field off the
    command line (the command sets it itself). ``since`` names the version that added a field: at its default it
    is left out of :meth:`Config.identity`, so that runs made before it existed keep their identity (and their
    run names) and still resume.
    """
    metadata = {"help": help, "check": check, "choices": tuple(choices) if choices is not None else None,
                "runtime": runtime, "cli": cli, "since": since,
                "nullable": (default is None and factory is None) if nullable is None else nullable}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# Checks shared by many fields -----------------------------------------------------------------------------------


def at_least(low: int) -> Check:
    return lambda v: None if isinstance(v, int) and not isinstance(v, bool) and v >= low else f"at least {low}"


def positive_count(v: Any) -> str | None:
    """A count (of examples, shots, ...): an int >= 1."""
    return None if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else "a positive number"


def positive(what: str = "number") -> Check:
    return lambda v: None if _number(v) and v > 0 and math.isfinite(v) else f"a positive, finite {what}"


def non_negative(v: Any) -> str | None:
    return None if _number(v) and v >= 0 and math.isfinite(v) else "a finite number >= 0"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def flag(name: str) -> str:
    """The command-line spelling of a field: ``max_grad_norm`` -> ``--max-grad-norm``."""
    return "--" + name.replace("_", "-")


# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Config:
    """Base of every configuration dataclass (see the module docstring)."""

    def __post_init__(self) -> None:
        self.validate()

    # Validation ---------------------------------------------------------------------------------------------

    def validate(self) -> None:
        """Check every field (its declared check and choices), then :meth:`check` for rules across fields."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Config) or (value is None and f.metadata.get("nullable")):
                continue
            choices = f.metadata.get("choices")
            for item in value if isinstance(value, tuple) else (value,):  # a tuple field's choices are per item
                if choices is not None and item not in choices:
                    raise ConfigError(f"{flag(f.name)} {item!r}: expected one of {', '.join(map(str, choices))}")
            check = f.metadata.get("check")
            expected = check(value) if check is not None else None
            if expected is not None:
                raise ConfigError(f"{flag(f.name)} {value}: expected {expected}")
        self.check()

    def check(self) -> None:
        """Rules that involve several fields (override; raise ConfigError)."""

    # Dictionaries -------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready: nested configs as dicts, tuples as lists."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def identity(self) -> dict[str, Any]:
        """The settings that define a result: :meth:`to_dict` without the ``runtime`` fields, at every level."""
        out = {}
        for f in dataclasses.fields(self):
            if f.metadata.get("runtime"):
                continue
            value = getattr(self, f.name)
            if f.metadata.get("since") and value == _default(f):
                continue
            out[f.name] = value.identity() if isinstance(value, Config) else _plain(value)
        return out

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any], **overrides: Any) -> C:
        """The inverse of :meth:`to_dict` (missing keys take their defaults; unknown keys are refused)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        data = {**data, **overrides}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            hint = did_you_mean(unknown[0], fields) if len(unknown) == 1 else ""
            raise ConfigError(f"unknown option(s) {unknown} for {cls.__name__}; "
                              + (hint or f"valid: {sorted(fields)}"))
        kwargs = {}
        for name, value in data.items():
            default = _default(fields[name])
            if isinstance(default, Config) and isinstance(value, Mapping):
                value = type(default).from_dict(value)
            elif isinstance(default, tuple) and isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)

    def updated(self: C, values: Mapping[str, Any]) -> C:
        """A copy with ``values`` laid over :meth:`to_dict` (nested dicts merged key by key; validated again)."""
        return type(self).from_dict(merge(self.to_dict(), values))

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def help(cls) -> list[tuple[str, Any, str]]:
        """(name, default, help text) of every field that has a default."""
        out = []
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                out.append((f.name, _default(f), f.metadata.get("help", "")))
        return out


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, nested dicts merged key by key."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# Command-line options derived from the fields -------------------------------------------------------------------


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return str(value)


def _parser_for(default: Any) -> Callable[[str], Any]:
    """argparse's own converter for the type of ``default`` (so its messages read "invalid int value: 'x'")."""
    return float if isinstance(default, float) else int if isinstance(default, int) else str


def add_arguments(parser: argparse.ArgumentParser, cls: type[Config], *, defaults: Config | None = None,
                  only: Iterable[str] | None = None, exclude: Iterable[str] = (),
                  types: Mapping[str, type] | None = None, default_text: Mapping[str, str] | None = None) -> None:
    """One command-line option per field of ``cls`` (nested configs and ``cli=False`` fields excluded).

    Options are left out of the namespace unless given (``argparse.SUPPRESS``), so a command builds its config
    from the library's defaults plus what the user typed (:func:`from_args`). ``defaults`` is the library config
    whose values the help shows; ``default_text`` replaces that text for fields whose default depends on other
    choices (a per-method learning rate); ``types`` gives the value type of fields whose default is None.
    """
    exclude, types, default_text = set(exclude), dict(types or {}), dict(default_text or {})
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True) or f.name in exclude or (only is not None and f.name not in only):
            continue
        default = _default(f) if defaults is None else getattr(defaults, f.name)
        if isinstance(default, Config) or default is dataclasses.MISSING or isinstance(default, (dict, list)):
            continue
        help_text = f.metadata.get("help", "")
        text = default_text.get(f.name, _show(default))
        if isinstance(default, bool):
            if default:
                parser.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false",
                                    default=argparse.SUPPRESS, help=f"{help_text}: off (default: on)")
            else:
                parser.add_argument(flag(f.name), dest=f.name, action="store_true", default=argparse.SUPPRESS,
                                    help=help_text)
            continue
        choices = f.metadata.get("choices")
        if isinstance(default, tuple):
            parser.add_argument(flag(f.name), dest=f.name, nargs="+", default=argparse.SUPPRESS, choices=choices,
                                help=f"{help_text} (default: {text})")
            continue
        example = types[f.name]() if f.name in types else default
        parse = _parser_for(example)
        if f.metadata.get("nullable"):
            parse = _nullable(parse)
        parser.add_argument(flag(f.name), dest=f.name, type=parse, default=argparse.SUPPRESS, choices=choices,
                            metavar=None if choices else f.name.upper(), help=f"{help_text} (default: {text})")


def _nullable(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse``, with "none" (or "off") for None."""

    def nullable(raw: str) -> Any:
        return None if raw.lower() in ("none", "off") else parse(raw)

    nullable.__name__ = parse.__name__  # argparse names the type in its messages
    return nullable


def from_args(base: C, args: argparse.Namespace) -> C:
    """``base`` with every field that the command line set, at every level of nesting: an option sets the field
    of its name in each config of the command (``--seed`` sets a tune run's seed and its data order's)."""
    values = vars(args)
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(base):
        current = getattr(base, f.name)
        if isinstance(current, Config):
            changes[f.name] = from_args(current, args)
        elif f.name in values and f.metadata.get("cli", True):
            value = values[f.name]
            changes[f.name] = tuple(value) if isinstance(current, tuple) and isinstance(value, list) else value
    return base.replace(**changes)
