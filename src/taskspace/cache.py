"""taskspace's cache folder and file digests.

The cache folder holds what taskspace derives once and reuses: converted backbones (see
:mod:`taskspace.backbones.smollm2`), the frozen backbones' scores (``frozen-scores/``, see :mod:`taskspace.frozen`),
the scores of thetas that are evaluated but not trained (``theta-scores/``: UDT's transfer) and
``file-digests.json``, the SHA-256 of large files keyed by path, size and modification time, so that a multi-GB
checkpoint is read through once, not on every load.

Location: ``$TASKSPACE_CACHE`` if set, else ``$XDG_CACHE_HOME/taskspace``, else ``~/.cache/taskspace``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CACHE_ENV = "TASKSPACE_CACHE"
_DIGESTS = "file-digests.json"


def cache_dir() -> Path:
    """The cache folder (not created here)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "taskspace"


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _read_digests(where: Path) -> dict:
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a missing or damaged digest cache only costs a re-hash
    return data if isinstance(data, dict) else {}


def file_sha256(path: str | Path, *, remember: bool = True) -> str:
    """SHA-256 of a file, streamed; remembered in the cache folder by (absolute path, size, mtime)."""
    from .store import write_json

    path = Path(path).resolve()
    key = _stat_key(path)
    where = cache_dir() / _DIGESTS
    digests = _read_digests(where) if remember else {}
    hit = digests.get(str(path))
    if isinstance(hit, dict) and hit.get("stat") == key and isinstance(hit.get("sha256"), str):
        return hit["sha256"]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    if remember:
        digests = _read_digests(where)  # re-read: another process may have added entries meanwhile
        digests[str(path)] = {"stat": key, "sha256": digest}
        try:
            write_json(where, digests)
        except OSError:
            pass  # a read-only cache folder: the digest is still correct, only not remembered
    return digest
