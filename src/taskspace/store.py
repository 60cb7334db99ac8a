"""Artefacts on disk: safetensors for tensors, JSON for everything else, written atomically; never pickle.

A saved delta is ``<name>.safetensors`` (tensor ``theta`` and, when it is not zero, ``theta_init``) plus
``<name>.json`` (method, its configuration and layout, the backbone and the SHA-256 of its weights, the library
version). :func:`load_delta` checks all of them against the backbone and method it is loaded into and says
exactly what differs.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .errors import ConfigError, DataError, IncompatibleError, StorageError, storage_error


def file_mode() -> int:
    """What ``open()`` would give a new file: 0666 less the process's umask (mkstemp's files are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic(path: Path, write) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # a file in the way of the folder, no permission, a read-only file system
        raise storage_error(e, e.filename or path.parent) from e
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())  # readable like any file the user writes (shared runs, banks)
        with open(tmp, "rb") as f:  # on disk before it replaces the old file, so a crash leaves one of the two
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, StorageError):  # a full disk: named by the file it replaces
            raise storage_error(e, path) from e
        raise


@contextlib.contextmanager
def exclusive(folder: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (through its ``.lock`` file) while writing into it: a second process
    that asks for the same folder is refused at once, so two writers never interleave. The folder is created; if
    the block fails before anything but the lock was written there, the folders this call created are removed.

    The lock file exists only while a process holds it: it is deleted before the lock is released. A process that
    opened it just before then may still lock the deleted file; it would then hold a lock that no longer guards the
    folder while a third process locks a new ``.lock``, so a lock is only taken as held once the path still names
    the file that was locked (:func:`_lock`), and otherwise the new file is locked instead."""
    import shutil

    folder = Path(folder)
    created = None
    if not folder.exists():
        created = folder
        while not created.parent.exists():
            created = created.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(e, e.filename or folder) from e
    handle = _lock(folder / ".lock")
    try:
        yield
    except BaseException:
        if created is not None and [p for p in created.rglob("*") if p.is_file()] == [folder / ".lock"]:
            shutil.rmtree(created, ignore_errors=True)
        raise
    finally:
        (folder / ".lock").unlink(missing_ok=True)  # still held: see the docstring
        handle.close()  # releases the lock


def _lock(path: Path):
    """An open handle of the lock file ``path``, exclusively locked; ConfigError when another process holds it."""
    import fcntl

    while True:
        try:
            handle = open(path, "a")
        except OSError as e:
            raise storage_error(e, path) from e
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            finished = not _names(path, handle)  # its holder deleted it: it is done writing
            handle.close()
            if finished:
                continue
            raise ConfigError(f"{path.parent} is being written by another taskspace process; wait for it to "
                              "finish, or write elsewhere") from None
        if _names(path, handle):
            return handle
        handle.close()  # the holder before deleted this file as it finished: lock the file that now guards


def _names(path: Path, handle) -> bool:
    """Whether ``path`` still names the file open as ``handle``."""
    held = os.fstat(handle.fileno())
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return False
    return (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino)


def write_text(path: str | Path, content: str) -> None:
    """Write a UTF-8 text file atomically (newlines written as given)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(content)

    _atomic(Path(path), write)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (a reader never sees a half-written file)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")

    _atomic(Path(path), write)


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except IsADirectoryError:
        raise DataError("expected a file, found a folder", path) from None
    except OSError as e:
        raise DataError(f"cannot read it ({e.strerror or e})", path) from None
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON ({e.msg})", path, e.lineno) from None


def _sort_header(path: str) -> None:
    """Rewrite a safetensors file's JSON header in place in a fixed key order. The library writes the metadata keys
    in a per-process hash order, so the same tensors would not always give the same bytes; the reordered header
    has the same length, so the data offsets stay valid."""
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        raw = f.read(n)
        header = json.loads(raw)
        ordered = {k: header[k] for k in sorted(header, key=lambda k: (k != "__metadata__", k))}
        if "__metadata__" in ordered:
            ordered["__metadata__"] = dict(sorted(ordered["__metadata__"].items()))
        text = json.dumps(ordered, separators=(",", ":")).encode()
        text += b" " * (n - len(text))  # the library pads the header with spaces to 8-byte alignment
        if len(text) != n or json.loads(text) != header:
            raise RuntimeError(f"{path}: unexpected safetensors header layout")
        f.seek(8)
        f.write(text)


def write_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """Write tensors as safetensors atomically (contiguous CPU copies; metadata values must be strings). The same
    tensors and metadata always give the same bytes."""
    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}

    def write(tmp: str) -> None:
        save_file(data, tmp, metadata=dict(metadata or {}))
        _sort_header(tmp)

    _atomic(Path(path), write)


def read_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise DataError("expected a file, found a folder" if path.is_dir() else "file not found", path)
    try:
        return load_file(str(path), device=str(device))
    except Exception as e:  # safetensors raises its own error types for truncated / corrupt files
        raise DataError(f"not a readable safetensors file ({e})", path) from None


def append_jsonl(path: str | Path, record: Mapping[str, Any]) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:
        raise storage_error(e, path) from e


# ----------------------------------------------------------------------------------------------------------------
# Deltas


def delta_record(method, backbone) -> dict[str, Any]:
    """What a saved delta needs to be reused safely."""
    return {
        "format": "taskspace.delta/1",
        "taskspace_version": __version__,
        "method": method.name,
        # identity(): options added in later versions stay out at their defaults, so older deltas keep loading
        "config": method.config.identity(),
        "size": method.size,
        "layout": method.layout.to_json(),
        "backbone": {
            "name": backbone.name,
            "family": backbone.family,
            "model_type": backbone.model_type,
            "fingerprint": backbone.fingerprint(),
        },
    }


def save_delta(path_stem: str | Path, method, theta: torch.Tensor, theta_init: torch.Tensor | None = None,
               extra: Mapping[str, Any] | None = None) -> None:
    """Save ``theta`` (``[D]``) as ``<stem>.safetensors`` + ``<stem>.json``."""
    stem = Path(path_stem)
    if theta.shape != (method.size,):
        raise ValueError(f"theta must have shape [{method.size}], got {tuple(theta.shape)}")
    tensors = {"theta": theta.float()}
    if theta_init is not None and bool(theta_init.any()):
        tensors["theta_init"] = theta_init.float()
    record = delta_record(method, method.backbone)
    if extra:
        record.update(extra)
    write_tensors(stem.with_suffix(".safetensors"), tensors, {"format": record["format"], "method": method.name})
    write_json(stem.with_suffix(".json"), record)


def check_compatible(saved: Mapping[str, Any], method, where: Path) -> None:
    """Raise IncompatibleError listing every difference between a saved delta and (method, its backbone)."""
    current = delta_record(method, method.backbone)
    problems = []
    if saved.get("method") != current["method"]:
        problems.append(f"method: saved {saved.get('method')!r}, current {current['method']!r}")
    if saved.get("config") != current["config"]:
        problems.append(f"method config: saved {saved.get('config')}, current {current['config']}")
    if saved.get("size") != current["size"] or saved.get("layout") != current["layout"]:
        problems.append(f"layout: saved size {saved.get('size')}, current size {current['size']}")
    sb, cb = saved.get("backbone", {}), current["backbone"]
    if sb.get("fingerprint") != cb["fingerprint"]:
        problems.append(
            f"backbone: saved {sb.get('name')!r} (weights sha256 {str(sb.get('fingerprint'))[:12]}...), "
            f"current {cb['name']!r} (weights sha256 {cb['fingerprint'][:12]}...)"
        )
    if problems:
        raise IncompatibleError(f"{where}: cannot load this delta here:\n  " + "\n  ".join(problems))


def load_delta(path_stem: str | Path, method) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Load and check a saved delta; returns (theta, theta_init, record). ``theta_init`` is zero if not stored."""
    stem = Path(path_stem)
    record = read_json(stem.with_suffix(".json"))
    check_compatible(record, method, stem.with_suffix(".json"))
    tensors = read_tensors(stem.with_suffix(".safetensors"), method.backbone.device)
    theta = tensors.get("theta")
    if theta is None or theta.shape != (method.size,):
        got = None if theta is None else tuple(theta.shape)
        raise DataError(f"tensor 'theta' missing or of shape {got}, expected ({method.size},)", stem.with_suffix(".safetensors"))
    theta_init = tensors.get("theta_init", torch.zeros_like(theta))
    return theta, theta_init, record
