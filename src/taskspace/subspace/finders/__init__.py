"""Subspace finders (``taskspace fit-subspace --recipe NAME``): ``Finder(config).fit(data) -> Subspace``.

Every module of this package registers its finders on import, so a new finder is one new file.
"""

from __future__ import annotations

from .base import FINDERS, FitData, Finder, register

FINDERS.load(__name__, __path__, first=("ipt", "unified", "shared", "random-ae", "fastfood"))  # the papers' order

from .fastfood import FastfoodConfig, FastfoodFinder  # noqa: E402
from .ipt import MSF, AutoEncoder, MSFConfig, RandomAEConfig, RandomAutoEncoder  # noqa: E402
from .linear import Linear, LinearConfig  # noqa: E402
from .shared import Shared, SharedConfig  # noqa: E402
from .unified import Unified, UnifiedConfig, mixing_weights  # noqa: E402


def finder_class(name: str) -> type[Finder]:
    return FINDERS.lookup(name)


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
    "Linear",
    "LinearConfig",
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
