"""Registries: a name -> class table that classes join with a decorator, so that adding a delta method, a
projection or a subspace finder is one new file (its package imports every module it holds)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, Iterable, TypeVar

from .errors import ConfigError

T = TypeVar("T", bound=type)


class Registry(dict, Generic[T]):
    """``{name: class}``, filled by :meth:`register`. ``key`` is the class attribute that names a class."""

    def __init__(self, what: str, key: str = "name"):
        super().__init__()
        self.what = what
        self.key = key

    def register(self, cls: T) -> T:
        """Class decorator: make ``cls`` available under its name."""
        name = getattr(cls, self.key, "")
        if not name:
            raise TypeError(f"{cls.__name__} has no {self.key}")
        if self.get(name, cls) is not cls:
            raise TypeError(f"{self.what} {name!r} registered twice")
        self[name] = cls
        return cls

    def lookup(self, name: str) -> T:
        """The class registered as ``name``; a ConfigError listing the known names otherwise."""
        try:
            return self[name]
        except (KeyError, TypeError):
            raise ConfigError(f"unknown {self.what} {name!r}; expected one of {', '.join(self)}") from None

    def load(self, package: str, path: Iterable[str], *, skip: Iterable[str] = ("base",),
             first: Iterable[str] = ()) -> None:
        """Import every module of ``package`` (each registers its classes), then put the names in ``first``
        before the others (the order listings and help show)."""
        skip = set(skip)
        for module in pkgutil.iter_modules(path):
            if module.name not in skip:
                importlib.import_module(f"{package}.{module.name}")
        first = [n for n in first if n in self]
        order = first + [n for n in self if n not in first]
        items = [(n, self.pop(n)) for n in order]
        self.update(items)
