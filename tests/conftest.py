"""Shared fixtures: where the shared data, tokenizers and models live.

The shared folder sits beside the repository (``../shared``); TASKSPACE_SHARED overrides that. Tests that need it
fail loudly when it is missing rather than being skipped: CI always provides it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_root() -> Path:
    root = Path(os.environ.get("TASKSPACE_SHARED", REPO.parent / "shared"))
    if not (root / "data" / "crossfit").is_dir():
        raise RuntimeError(
            f"shared folder not found at {root} (expected {root}/data/crossfit); "
            "set TASKSPACE_SHARED to the folder that holds data/, models/ and tokenizers/"
        )
    return root


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return shared_root()


@pytest.fixture(scope="session")
def data_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "crossfit"
