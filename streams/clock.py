"""Clocks that decide *when* a partition sweeps; the core itself computes in event time."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Tells the current time of a partition, in epoch seconds."""

    def observe(self, partition: int, event_time: float) -> None:
        """Record that an event with ``event_time`` was read from ``partition``."""

    def now(self, partition: int) -> float | None:
        """Current time for ``partition``; None while it is unknown."""


class WallClock:
    """Live mode: the machine's clock."""

    def observe(self, partition: int, event_time: float) -> None:
        """Wall time ignores event times."""

    def now(self, partition: int) -> float | None:
        """Seconds since the epoch, now."""
        return time.time()


class WatermarkClock:
    """Replay/backtest mode: per partition, the max event time seen minus allowed lateness."""

    def __init__(self, allowed_lateness_s: float = 0.0) -> None:
        self._lateness = allowed_lateness_s
        self._max_seen: dict[int, float] = {}

    def observe(self, partition: int, event_time: float) -> None:
        """Advance the partition's watermark if ``event_time`` is the newest seen."""
        if event_time > self._max_seen.get(partition, float("-inf")):
            self._max_seen[partition] = event_time

    def now(self, partition: int) -> float | None:
        """The partition's watermark, or None before its first event."""
        seen = self._max_seen.get(partition)
        return None if seen is None else seen - self._lateness


class ManualClock:
    """Tests: time moves only when told to."""

    def __init__(self, start: float) -> None:
        self.current = start

    def observe(self, partition: int, event_time: float) -> None:
        """Manual time ignores event times."""

    def now(self, partition: int) -> float | None:
        """The time last set."""
        return self.current

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.current += seconds
