"""The split of recipes/smol-catalog.yaml: which catalog tasks are unseen, by a rule fixed before any result.

    python recipes/catalog_split.py [--every 6] [--data-dir DIR]

The rule: within each category of the catalog (cls, non-cls: CrossFit's ontology, ``taskspace.tasks.catalog``),
the tasks sorted by name, every ``every``-th one from the first is unseen; every other catalog task trains (the
bank). The training tasks are listed alternating between the categories (cls first, then the longer list's rest),
so that the first ones, the recipe's challenge tasks, hold both categories alike. Prints both lists as the
recipe's YAML, after checking that the data folder holds every task; tests/test_recipes.py checks that the recipe
holds exactly these lists.
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


def catalog_split(every: int = 6) -> tuple[list[str], list[str]]:
    """(training tasks, unseen tasks) of the catalog by the rule above."""
    train: dict[str, list[str]] = {}
    unseen: list[str] = []
    for category in CATEGORIES:
        names = sorted(t for t, info in CATALOG.items() if info.category == category)
        unseen += names[::every]
        train[category] = [t for i, t in enumerate(names) if i % every]
    alternating = [t for pair in zip_longest(*(train[c] for c in CATEGORIES)) for t in pair if t is not None]
    return alternating, unseen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--every", type=int, default=6, help="every N-th task of each category is unseen (default: 6)")
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "crossfit"))
    args = ap.parse_args()
    if args.every < 2:
        raise ConfigError(f"--every {args.every}: expected 2 or more (1 would leave no training task)")
    train, unseen = catalog_split(args.every)
    missing = sorted(set(train + unseen) - set(available_tasks(args.data_dir)))
    if missing:
        raise ConfigError(f"--data-dir {args.data_dir}: no files for {', '.join(missing)}")
    for key, tasks in (("train_tasks", train), ("unseen_tasks", unseen)):
        print(f"{key}:  # {len(tasks)}")
        print("\n".join(f"  - {t}" for t in tasks))


if __name__ == "__main__":
    run_main(main)
