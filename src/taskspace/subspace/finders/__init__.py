"""Subspace finders (``taskspace fit-subspace --recipe NAME``): ``Finder(config).fit(data) -> Subspace``.

Every module of this package registers its finders on import, so a new finder is one new file.
"""

from __future__ import annotations

import importlib
import pkgutil

from ...errors import ConfigError
from .base import FINDERS, FitData, Finder, register

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

from .fastfood import FastfoodConfig, FastfoodFinder  # noqa: E402
from .ipt import MSF, AutoEncoder, MSFConfig, RandomAEConfig, RandomAutoEncoder  # noqa: E402
from .shared import Shared, SharedConfig  # noqa: E402
from .unified import Unified, UnifiedConfig, mixing_weights  # noqa: E402

#: The papers' order first.
_ORDER = ("ipt", "unified", "shared", "random-ae", "fastfood")
FINDERS.update({n: FINDERS.pop(n) for n in [*_ORDER, *(n for n in list(FINDERS) if n not in _ORDER)] if n in FINDERS})


def finder_class(name: str) -> type[Finder]:
    try:
        return FINDERS[name]
    except KeyError:
        raise ConfigError(f"unknown finder {name!r}; expected one of {', '.join(FINDERS)}") from None


def build_finder(name: str, config=None) -> Finder:
    """The finder ``name`` with ``config`` (its config class, or a dict of options; None: the defaults)."""
    cls = finder_class(name)
    if isinstance(config, dict):
        config = cls.config_class.from_dict(config)
    return cls(config)


__all__ = [
    "AutoEncoder",
    "FINDERS",
    "FastfoodConfig",
    "FastfoodFinder",
    "Finder",
    "FitData",
    "MSF",
    "MSFConfig",
    "RandomAEConfig",
    "RandomAutoEncoder",
    "Shared",
    "SharedConfig",
    "Unified",
    "UnifiedConfig",
    "build_finder",
    "finder_class",
    "mixing_weights",
    "register",
]
