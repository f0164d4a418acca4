"""RFM cut points handed from a backtest's main process to its parts as it works them out.

The parts of a backtest split over processes need the population's cut points, which only
the main process can work out (from every customer's orders). Worked out first, they kept
the other CPUs idle for most of a second on CDNOW; now the parts start at once and the
main process works them out beside them, sending each as it is known. The main process
runs far ahead of the parts (it only counts orders), so a part seldom waits for one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from math import inf
from typing import Any

from streams.sketch import CutPoints


class CutFeed:
    """The main process's end: one queue per part, fed in sweep-time order, then closed.

    Queues, not bare pipes: a put never blocks the main process, even when a part has
    stopped reading.
    """

    def __init__(self, context: Any, parts: int) -> None:
        self.queues = [context.Queue() for _ in range(parts)]
        for queue in self.queues:
            queue.cancel_join_thread()  # a part that died must not hold up the exit

    def send(self, at: float, cuts: CutPoints | None) -> None:
        """Give every part the cut points of the sweep at ``at``."""
        data = None if cuts is None else cuts.to_dict()
        for queue in self.queues:
            queue.put((at, data))

    def close(self) -> None:
        """Tell every part that no cut points follow."""
        for queue in self.queues:
            queue.put(None)

    def reader(self, part: int) -> StreamedCuts:
        """What part ``part`` reads the cut points from (in the part's process)."""
        return StreamedCuts(self.queues[part])


class StreamedCuts(Mapping[float, CutPoints | None]):
    """Cut points by sweep time, read from the main process as a sweep asks for them."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        self._known: dict[float, CutPoints | None] = {}
        self._reached = -inf
        self._complete = False

    def _read_until(self, at: float) -> None:
        while not self._complete and self._reached < at:
            item = self._queue.get()
            if item is None:
                self._complete = True
                break
            when, data = item
            self._known[when] = None if data is None else CutPoints.from_dict(data)
            self._reached = when

    def __contains__(self, at: object) -> bool:
        if not isinstance(at, int | float):
            return False
        self._read_until(at)
        return at in self._known

    def __getitem__(self, at: float) -> CutPoints | None:
        self._read_until(at)
        return self._known[at]

    def __iter__(self) -> Iterator[float]:
        self._read_until(inf)
        return iter(self._known)

    def __len__(self) -> int:
        self._read_until(inf)
        return len(self._known)
