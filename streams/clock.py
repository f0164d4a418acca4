"""Clocks that decide *when* a partition sweeps; the core itself computes in event time."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol


class Clock(Protocol):
    """Tells the current time of a partition, in epoch seconds."""

    def observe(self, partition: int, event_time: float, source: str = "") -> None:
        """Record that an event with ``event_time`` was read from ``source``'s ``partition``."""

    def now(self, partition: int) -> float | None:
        """Current time for ``partition``; None while it is unknown."""


class WallClock:
    """Live mode: the machine's clock."""

    def observe(self, partition: int, event_time: float, source: str = "") -> None:
        """Wall time ignores event times."""

    def now(self, partition: int) -> float | None:
        """Seconds since the epoch, now."""
        return time.time()


class WatermarkClock:
    """Event time per partition: the slowest active input's newest event minus the lateness.

    Every input topic feeding a partition is a source. A source that has read nothing for
    ``idle_s`` seconds of wall time (caught up, or quiet like the accounts topic) stops
    holding the watermark back, so one idle topic cannot stall time. The watermark of a
    partition never goes backwards.
    """

    def __init__(
        self,
        allowed_lateness_s: float = 0.0,
        idle_s: float = 10.0,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lateness = allowed_lateness_s
        self._idle_s = idle_s
        self._wall = wall
        self._sources: dict[int, dict[str, list[float]]] = {}  # [newest event, last read]
        self._marks: dict[int, float] = {}

    def observe(self, partition: int, event_time: float, source: str = "") -> None:
        """Note an event read from ``source``'s ``partition``."""
        sources = self._sources.setdefault(partition, {})
        seen = sources.get(source)
        if seen is None:
            sources[source] = [event_time, self._wall()]
        else:
            seen[0] = max(seen[0], event_time)
            seen[1] = self._wall()

    def now(self, partition: int) -> float | None:
        """The partition's watermark, or None before its first event."""
        sources = self._sources.get(partition)
        if not sources:
            return None
        return self._mark(partition, sources, self._wall())

    def observe_all(
        self, partition: int, events: Sequence[tuple[float, str]]
    ) -> list[float | None]:
        """Observe a batch of (event time, source) in order; the watermark before each.

        The same as :meth:`now` then :meth:`observe` for every event, with the wall time
        read once for the batch and the watermark worked out again only after an event
        moved its source.
        """
        if not events:
            return []
        sources = self._sources.setdefault(partition, {})
        wall = self._wall()
        out: list[float | None] = []
        mark: float | None = None
        moved = True
        for event_time, source in events:
            if moved:
                mark = self._mark(partition, sources, wall)
                moved = False
            out.append(mark)
            seen = sources.get(source)
            if seen is None:
                sources[source] = [event_time, wall]
                moved = True
                continue
            if event_time > seen[0]:
                seen[0] = event_time
                moved = True
            if seen[1] != wall:  # read again: an idle source is active again
                seen[1] = wall
                moved = True
        return out

    def _mark(self, partition: int, sources: dict[str, list[float]], wall: float) -> float | None:
        """The partition's watermark at ``wall`` (kept: it never goes backwards)."""
        if not sources:
            return None
        active = [newest for newest, read in sources.values() if wall - read < self._idle_s]
        slowest = min(active) if active else max(newest for newest, _ in sources.values())
        mark = max(self._marks.get(partition, float("-inf")), slowest - self._lateness)
        self._marks[partition] = mark
        return mark

    def forget(self, partition: int) -> None:
        """Drop a partition (revoked): its next owner starts from its own events."""
        self._sources.pop(partition, None)
        self._marks.pop(partition, None)


class ManualClock:
    """Tests: time moves only when told to."""

    def __init__(self, start: float) -> None:
        self.current = start

    def observe(self, partition: int, event_time: float, source: str = "") -> None:
        """Manual time ignores event times."""

    def now(self, partition: int) -> float | None:
        """The time last set."""
        return self.current

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.current += seconds
