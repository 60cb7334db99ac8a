"""Subspace finders (``taskspace fit-subspace --recipe NAME``): ``Finder(config).fit(data) -> Subspace``.

Every module of this package registers its finders on import, so a new finder is one new file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ...config import Config
from ...errors import ConfigError
from ..bank import Bank
from ..space import Subspace
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


def fit_subspace(finder: str | Finder, data: Bank | FitData, tasks: Sequence[str] | None = None, *,
                 config: Config | Mapping[str, Any] | None = None, out: str | Path | None = None) -> Subspace:
    """Fit a subspace, as ``taskspace fit-subspace`` does.

    ``finder``: a finder's name (``ipt``, ``unified``, ``shared``, ``random-ae``, ``fastfood``) with ``config``, its
    config (:class:`MSFConfig`, ...), a dict of its options or None for its defaults; or a finder already built.
    ``data``: a :class:`~taskspace.subspace.Bank`, whose solutions of ``tasks`` are fitted (None: all the bank's
    tasks, none for a finder that needs no training tasks), or a :class:`FitData` (which names its own tasks).
    With ``out``, the fit keeps its resumable training state there (an interrupted fit resumes) and the subspace
    is saved there (``Subspace.load(out, backbone)`` reads it back); one process at a time may write a folder, the
    caller's to ensure (the command holds its lock)."""
    if isinstance(finder, Finder):
        if config is not None:
            raise ConfigError(f"fit_subspace: the {finder.name} finder given has its config; pass config= with a "
                              "finder's name instead")
    else:
        finder = build_finder(finder, config)
    if isinstance(data, Bank):
        if tasks is None:
            tasks = list(data.spec.tasks) if finder.needs_tasks else []
        data = FitData.from_bank(data, list(tasks))
    elif tasks is not None:
        raise ConfigError("fit_subspace: tasks= goes with a bank; a FitData names its own tasks")
    space = finder.fit(data, work_dir=out)
    if out is not None:
        space.save(out)
    return space


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
    "fit_subspace",
    "mixing_weights",
    "register",
]
