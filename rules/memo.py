"""CEL programs with their results memoised on their input values (programs are pure)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

import cel

from streams.caches import remember

MISS: Final = object()
"""Sentinel for "not computed yet"."""


class Values:
    """Feature values by name, for one customer at one time.

    The compiled core's readers derive from it, so a memo asks for values with a native
    method call rather than through a Python callable.
    """

    def value(self, name: str) -> Any:
        """The value of feature ``name``."""
        raise NotImplementedError


class CalledValues(Values):
    """Values given by a function of the feature name."""

    def __init__(self, value: Callable[[str], Any]) -> None:
        self._value = value

    def value(self, name: str) -> Any:
        """The value of feature ``name``."""
        return self._value(name)


def values_of(value: Values | Callable[[str], Any]) -> Values:
    """``value`` as :class:`Values` (a function of the feature name is wrapped)."""
    return value if isinstance(value, Values) else CalledValues(value)


class Memo:
    """A CEL program with its results memoised on its input values (programs are pure)."""

    __slots__ = ("cache", "limit", "names", "program")

    def __init__(self, program: cel.Program, limit: int) -> None:
        self.program = program
        self.names: tuple[str, ...] = tuple(sorted(program.variables()))
        self.cache: dict[tuple[Any, ...], Any] = {}
        self.limit = limit

    def run(self, values: Values) -> Any:
        """The program's result on the named features' values."""
        key = tuple([values.value(n) for n in self.names])
        hit = self.cache.get(key, MISS)
        if hit is MISS:
            hit = self.program.execute(dict(zip(self.names, key, strict=True)))
            remember(self.cache, key, hit, self.limit)
        return hit


def discard(mapping: dict[str, Any], keys: Iterable[str]) -> bool:
    """Drop those of ``keys`` that ``mapping`` has; True if there was one.

    ``in`` and ``del``: compiled, ``dict.pop(key, None)`` is a generic method call.
    """
    dropped = False
    for key in keys:
        if key in mapping:
            del mapping[key]
            dropped = True
    return dropped
