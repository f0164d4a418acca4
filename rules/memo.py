"""CEL programs with their results memoised on their input values (programs are pure)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cel

MISS = object()
"""Sentinel for "not computed yet"."""


class Memo:
    """A CEL program with its results memoised on its input values (programs are pure)."""

    __slots__ = ("cache", "limit", "names", "program")

    def __init__(self, program: cel.Program, limit: int) -> None:
        self.program = program
        self.names = tuple(sorted(program.variables()))
        self.cache: dict[tuple[Any, ...], Any] = {}
        self.limit = limit

    def run(self, value: Callable[[str], Any]) -> Any:
        key = tuple(map(value, self.names))
        hit = self.cache.get(key, MISS)
        if hit is MISS:
            hit = self.program.execute(dict(zip(self.names, key, strict=True)))
            remember(self.cache, key, hit, self.limit)
        return hit


def remember(cache: dict[Any, Any], key: Any, value: Any, limit: int) -> None:
    """Put ``value`` in a memo of at most ``limit`` entries (a full one starts afresh)."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
