"""Choosing training tasks: without some task types (IPT's Fig. 4) or a seeded fraction of them (IPT's Fig. 7).

Both are used by ``taskspace fit-subspace`` (``--exclude-type``, ``--task-fraction``) and by the recipes; errors
name the option or setting they came from (``option``).
"""

from __future__ import annotations

import math
import random

from ..errors import ConfigError
from .catalog import CATALOG


def exclude_types(tasks: list[str], types: list[str], option: str = "--exclude-type") -> list[str]:
    """``tasks`` without those whose catalog type is one of ``types`` (IPT's Fig. 4, *excluded*); tasks outside
    the catalog have no type and stay."""
    known = sorted({info.type for info in CATALOG.values()})
    for t in types:
        if t not in known:
            raise ConfigError(f"{option} {t!r}: not a task type of the catalog; types: {', '.join(known)}")
    kept = [t for t in tasks if t not in CATALOG or CATALOG[t].type not in types]
    if not kept:
        raise ConfigError(f"{option} {', '.join(types)}: every training task has that type; nothing is left to fit")
    return kept


def task_subset(tasks: list[str], fraction: float, seed: int, option: str = "--task-fraction") -> list[str]:
    """A seeded random ``fraction`` of ``tasks`` (at least one), in their given order; nested for one seed: the
    subset at a smaller fraction is part of the subset at a larger one."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"{option} {fraction}: expected a number in (0, 1]")
    if not tasks:
        raise ConfigError(f"{option}: there are no training tasks to choose from")
    order = list(tasks)
    random.Random(seed).shuffle(order)
    keep = set(order[:max(1, math.ceil(fraction * len(tasks)))])
    return [t for t in tasks if t in keep]
