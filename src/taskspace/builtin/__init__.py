"""Subspaces that ship inside the package: ``builtin:NAME`` is accepted wherever a subspace folder is.

A built-in is a folder ``NAME/`` of this package holding what :meth:`taskspace.subspace.Subspace.save` writes
(``subspace.json``, ``subspace.safetensors``) and ``card.md``, whose first line says in one sentence what it is
and whose rest gives its training tasks, the recipe command that made it, its unseen-task scores with intervals,
and the backbone's fingerprint and template. Loading one checks the backbone and template as for any subspace
folder. ``taskspace subspaces`` lists them; ``recipes/ship_subspace.py`` writes one (its files and card) from a
finished recipe run.

The environment variable ``TASKSPACE_BUILTIN_DIR`` names another folder to take the built-ins from (tests, or
trying a candidate before it ships).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..store import read_json

#: The form that names a built-in wherever a subspace folder is taken.
PREFIX = "builtin:"
#: Replaces the package's folder as the place of the built-ins.
ROOT_ENV = "TASKSPACE_BUILTIN_DIR"
CARD = "card.md"
#: The most a built-in may weigh (all its files): the package stays small to install.
MAX_BYTES = 20_000_000


def builtin_root() -> Path:
    """The folder of the built-ins: ``$TASKSPACE_BUILTIN_DIR``, else this package's folder."""
    explicit = os.environ.get(ROOT_ENV)
    return Path(explicit) if explicit else Path(__file__).resolve().parent


def builtin_names() -> list[str]:
    """The installed built-ins: the root's folders that hold a ``subspace.json``, sorted."""
    from ..subspace.files import SUBSPACE_JSON  # a built-in is a subspace folder (that module names it here)

    root = builtin_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / SUBSPACE_JSON).is_file())


def is_builtin(spec: str | Path) -> bool:
    """Whether ``spec`` names a built-in (``builtin:NAME``) rather than a folder."""
    return isinstance(spec, str) and spec.startswith(PREFIX)


def subspace_folder(spec: str | Path) -> Path:
    """The folder of a subspace named by ``spec``: a folder as given, or the built-in of ``builtin:NAME`` (an
    unknown name is refused with the close ones, or with the news that none is installed)."""
    if not is_builtin(spec):
        return Path(spec)
    name = spec[len(PREFIX):]
    names = builtin_names()
    if name in names:
        return builtin_root() / name
    if not names:
        raise ConfigError(f"{spec}: no built-in subspaces are installed yet (`taskspace subspaces` lists them)")
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = (f"did you mean {', '.join(PREFIX + c for c in close)}?" if close
            else f"the built-ins are {', '.join(PREFIX + n for n in names)}")
    raise ConfigError(f"{spec}: no such built-in subspace; {hint}")


@dataclass(frozen=True)
class Builtin:
    """What ``taskspace subspaces`` shows of a built-in."""

    name: str
    backbone: str
    fingerprint: str
    template: str
    recipe: str
    d: int
    methods: tuple[str, ...]
    size: int  # bytes, all its files
    summary: str  # the card's first line

    @classmethod
    def read(cls, name: str) -> "Builtin":
        from ..subspace.files import SUBSPACE_JSON

        folder = subspace_folder(PREFIX + name)
        meta = read_json(folder / SUBSPACE_JSON)
        card = folder / CARD
        lines = card.read_text(encoding="utf-8").splitlines() if card.is_file() else []
        summary = lines[0].lstrip("# ").strip() if lines else "(no card.md)"
        backbone = meta["backbone"]
        return cls(name, backbone["name"], backbone["fingerprint"], backbone.get("template", "plain"), meta["recipe"],
                   meta["d"], tuple(meta["methods"]), folder_bytes(folder), summary)


def folder_bytes(folder: Path) -> int:
    """The size of the files in ``folder`` (not below it)."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def builtins() -> list[Builtin]:
    """Every installed built-in, by name."""
    return [Builtin.read(name) for name in builtin_names()]


__all__ = ["Builtin", "CARD", "MAX_BYTES", "PREFIX", "ROOT_ENV", "builtin_names", "builtin_root", "builtins",
           "folder_bytes", "is_builtin", "subspace_folder"]
