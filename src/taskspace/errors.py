"""Exceptions raised by taskspace.

Every error names what was wrong and where (file, line, option) and what was expected, so that a user can fix
the input without reading the code.
"""

from __future__ import annotations

from pathlib import Path


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
