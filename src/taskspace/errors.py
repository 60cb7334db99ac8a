"""Exceptions raised by taskspace.

Every error names what was wrong and where (file, line, option) and what was expected, so that a user can fix
the input without reading the code.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Iterable


class TaskspaceError(Exception):
    """Base class of all errors raised on purpose by taskspace."""


class DataError(TaskspaceError, ValueError):
    """Task data that cannot be read: a malformed line, an empty split, an answer that is not an option."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else Path(path)
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)


class UnknownTaskError(TaskspaceError, KeyError):
    """A task name that is neither in the catalog nor present in the data directory."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class ConfigError(TaskspaceError, ValueError):
    """An option or configuration value that is out of range or inconsistent."""


class IncompatibleError(TaskspaceError, ValueError):
    """A saved artefact that does not match the backbone, method or layout it is loaded into."""


class StorageError(TaskspaceError, OSError):
    """A file or folder that cannot be written: a full disk, no permission, a read-only file system, a folder where
    a file is expected or a file where a folder is. An ``OSError`` (``errno``, ``strerror``, ``filename``) whose
    message names the path as the user knows it (the file being replaced, not its temporary twin)."""

    def __str__(self) -> str:
        return super().__str__() if self.filename is None else f"{self.filename}: {self.strerror}"


def storage_error(error: OSError, path: str | Path) -> StorageError:
    """``error``, raised while writing ``path``, as a :class:`StorageError` naming ``path``."""
    if Path(path).is_dir() and not isinstance(error, FileExistsError):
        reason = "a folder stands where a file is expected"
    elif isinstance(error, (FileExistsError, NotADirectoryError)):
        reason = "a file stands where a folder is expected"
    else:
        reason = error.strerror or str(error)
    return StorageError(error.errno, f"cannot write it ({reason})", str(path))


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during training: a ``KeyboardInterrupt`` that says what was saved, so that a command ends on
    one line and the same command resumes from there. Not a :class:`TaskspaceError`: whoever catches
    ``KeyboardInterrupt`` still does."""

    def __init__(self, saved: str):
        super().__init__(saved)
        self.saved = saved


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"did you mean X?"`` naming up to three of ``candidates`` close to a misspelt ``name`` (difflib, as task
    names are matched), or ``""`` when none is close."""
    close = difflib.get_close_matches(str(name), sorted({str(c) for c in candidates}), n=3, cutoff=0.6)
    return f"did you mean {', '.join(close)}?" if close else ""
