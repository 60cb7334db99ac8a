"""The splits of recipes/smol-catalog.yaml (IPT) and recipes/smol-udt-catalog.yaml (UDT): which catalog tasks train
and which are unseen, by rules fixed before any result.

    python recipes/catalog_split.py [--every 6] [--data-dir DIR]
    python recipes/catalog_split.py --udt [--train-every 3] [--unseen-every 2] [--data-dir DIR]

IPT's rule: within each category of the catalog (cls, non-cls: CrossFit's ontology, ``taskspace.tasks.catalog``),
the tasks sorted by name, every ``every``-th one from the first is unseen; every other catalog task trains (the
bank). UDT's rule thins IPT's split within each category, so that its unseen tasks are unseen in the IPT recipe too
and the two reports can be read side by side: every ``unseen_every``-th of IPT's unseen tasks from the first is
unseen, every ``train_every``-th of IPT's training tasks from the first trains (by name, as before). The training
tasks are listed alternating between the categories (cls first, then the longer list's rest), so that the first
ones (IPT's challenge tasks) hold both categories alike; the unseen tasks are listed category by category. Prints
both lists as the recipe's YAML, after checking that the data folder holds every task; tests/test_recipe_files.py
checks that each recipe holds exactly these lists.
"""

from __future__ import annotations

import argparse
import sys
from itertools import zip_longest
from pathlib import Path

from taskspace.errors import ConfigError
from taskspace.tasks import CATALOG, available_tasks
from taskspace.tasks.catalog import CATEGORIES

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_common import run_main  # noqa: E402


def _by_category(every: int) -> dict[str, tuple[list[str], list[str]]]:
    """Per category, (training tasks, unseen tasks) of IPT's rule, each sorted by name."""
    split = {}
    for category in CATEGORIES:
        names = sorted(t for t, info in CATALOG.items() if info.category == category)
        split[category] = ([t for i, t in enumerate(names) if i % every], names[::every])
    return split


def _alternating(lists: list[list[str]]) -> list[str]:
    """The lists' items taken in turn (the first list first), then the longer lists' rest."""
    return [t for group in zip_longest(*lists) for t in group if t is not None]


def catalog_split(every: int = 6) -> tuple[list[str], list[str]]:
    """(training tasks, unseen tasks) of the catalog by IPT's rule above."""
    split = _by_category(every)
    return (_alternating([split[c][0] for c in CATEGORIES]),
            [t for c in CATEGORIES for t in split[c][1]])


def udt_split(every: int = 6, train_every: int = 3, unseen_every: int = 2) -> tuple[list[str], list[str]]:
    """(training tasks, unseen tasks) by UDT's rule above: IPT's split (``every``) thinned within each category,
    every ``train_every``-th training task and every ``unseen_every``-th unseen task from the first."""
    split = _by_category(every)
    return (_alternating([split[c][0][::train_every] for c in CATEGORIES]),
            [t for c in CATEGORIES for t in split[c][1][::unseen_every]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--every", type=int, default=6, help="every N-th task of each category is unseen (default: 6)")
    ap.add_argument("--udt", action="store_true", help="print UDT's split (recipes/smol-udt-catalog.yaml) instead")
    ap.add_argument("--train-every", type=int, default=3,
                    help="with --udt: every N-th of IPT's training tasks of each category trains (default: 3)")
    ap.add_argument("--unseen-every", type=int, default=2,
                    help="with --udt: every N-th of IPT's unseen tasks of each category is unseen (default: 2)")
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "crossfit"))
    args = ap.parse_args()
    if args.every < 2:
        raise ConfigError(f"--every {args.every}: expected 2 or more (1 would leave no training task)")
    for flag, value in (("--train-every", args.train_every), ("--unseen-every", args.unseen_every)):
        if value < 1:
            raise ConfigError(f"{flag} {value}: expected 1 or more (1 keeps every task of IPT's list)")
    if args.udt:
        train, unseen = udt_split(args.every, args.train_every, args.unseen_every)
    else:
        train, unseen = catalog_split(args.every)
    missing = sorted(set(train + unseen) - set(available_tasks(args.data_dir)))
    if missing:
        raise ConfigError(f"--data-dir {args.data_dir}: no files for {', '.join(missing)}")
    for key, tasks in (("train_tasks", train), ("unseen_tasks", unseen)):
        print(f"{key}:  # {len(tasks)}")
        print("\n".join(f"  - {t}" for t in tasks))


if __name__ == "__main__":
    run_main(main)
