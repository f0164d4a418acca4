"""Bounded memos: a dict of results that starts afresh when it is full."""

from __future__ import annotations

from typing import Any


def remember(cache: dict[Any, Any], key: Any, value: Any, limit: int) -> None:
    """Put ``value`` in a memo of at most ``limit`` entries (a full one starts afresh)."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
