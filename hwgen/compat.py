"""Backports of standard-library behaviour newer than the oldest Python hwgen supports (3.11), and
:func:`lazy_module`."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import lru_cache
from types import ModuleType

__all__ = ["cached_property", "lazy_module"]


def lazy_module(name: str) -> Callable[[], ModuleType]:
    """A function returning module ``name`` (absolute), imported on its first call and afterwards returned without
    going through the import machinery: for a module its caller must not load at import time (it is heavy, or it
    imports the caller back) on a path a design-space sweep runs for every point."""
    @lru_cache(maxsize=1)
    def module() -> ModuleType:
        return importlib.import_module(name)
    return module


class cached_property:  # noqa: N801 (named as functools' own)
    """``functools.cached_property`` as Python 3.12 has it: computed on first access and stored in the instance's
    ``__dict__`` (later reads are plain attribute reads), without the lock 3.11 takes on every first access. The
    lock serialized first accesses of one property across all instances and threads, and it costs about a
    microsecond per first access: a design-space sweep builds a few configurations, plans and programs per point,
    each with a handful of derived figures read once or twice. Works on frozen dataclasses (the value goes
    straight into ``__dict__``); not on classes with ``__slots__``."""

    def __init__(self, func):
        self.func = func
        self.attrname = None
        self.__doc__ = func.__doc__
        self.__module__ = func.__module__

    def __set_name__(self, owner, name: str) -> None:
        if self.attrname is None:
            self.attrname = name
        elif name != self.attrname:
            raise TypeError(f"cannot assign the same cached_property to two names ({self.attrname!r} and {name!r})")

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        if self.attrname is None:
            raise TypeError("cannot use cached_property instance without calling __set_name__ on it")
        value = instance.__dict__[self.attrname] = self.func(instance)
        return value
