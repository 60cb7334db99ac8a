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


#: Set by pytest-xdist in each worker process (``gw0``, ``gw1``, ...).
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")

if XDIST_WORKER is not None:
    import torch

    # Workers share the cores: one thread each (and each process a test starts), or their OpenMP threads
    # oversubscribe the cores many times over.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def cache_folder(tmp_path_factory):
    """A fresh taskspace cache folder for the whole test session (shared by the workers of a ``pytest -n``
    session): tests never read or fill a user's cache (converted models, file digests, the frozen models' scores)."""
    from taskspace.cache import CACHE_ENV

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if XDIST_WORKER is not None else base) / "taskspace-cache"
    root.mkdir(exist_ok=True)
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(root)
    try:
        yield root
    finally:
        if previous is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = previous


@pytest.fixture(scope="session")
def smollm2_cache(cache_folder):
    """The session's cache folder holding the real SmolLM2 conversion, made once per test session (by the first
    worker of a ``pytest -n`` session while the others wait); every test that loads the default backbone uses it."""
    from filelock import FileLock

    from taskspace.backbones import smollm2

    with FileLock(str(cache_folder) + ".lock"):
        folder = smollm2.smollm2_folder()
    return cache_folder, folder


@pytest.fixture(scope="session")
def smol(smollm2_cache):
    """The default backbone, SmolLM2-135M-Instruct, loaded once per test session."""
    from taskspace.backbones import load_backbone

    return load_backbone("smollm2")


#: Fixtures that take many seconds to build (the SmolLM2 conversion and load): a test that uses one is slow.
SLOW_FIXTURES = {"smol", "smollm2_cache"}


def pytest_collection_modifyitems(config, items):
    """The fast tier (``-m "not slow"``) leaves out every test marked slow, and every test that needs SmolLM2.

    Then the modules with the most slow tests run first (each module's tests in their own order): with ``-n 2
    --dist loadscope`` a worker takes a whole module at a time, and the long ones started last would leave one
    worker running alone at the end."""
    slow: dict[str, int] = {}  # slow tests per module, in collection order
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        module = item.nodeid.split("::")[0]
        slow[module] = slow.get(module, 0) + (item.get_closest_marker("slow") is not None)
    order = {module: rank for rank, module in enumerate(slow)}

    def key(item) -> tuple[int, int]:
        module = item.nodeid.split("::")[0]
        return -slow[module], order[module]

    items.sort(key=key)  # stable: a module's tests keep their order
