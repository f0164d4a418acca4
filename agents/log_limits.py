"""Repeated Kafka client errors logged once per window, not on every retry.

While the broker is unreachable, aiokafka logs each failed connect, metadata refresh, fetch
and coordinator lookup of every client in the worker (Faust's consumer and producer, the input
reader, the RFM reader): about 150 lines a second here, gigabytes of logs over an outage of a
few hours. :class:`RepeatLimiter` lets the first of each message through, drops its repeats
for ``window_s`` seconds, and then lets the next one through with how many were dropped
(``suppressed=N``). The reader's own ``broker_unreachable`` and ``broker_reachable_again``
lines say when the outage starts and ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

CLIENT_LOGGER_PREFIXES = ("aiokafka", "faust.transport")
DEFAULT_WINDOW_S = 30.0


class RepeatLimiter(logging.Filter):
    """Pass a WARNING-or-worse message once per ``window_s`` per logger and message template."""

    def __init__(
        self, window_s: float = DEFAULT_WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # key → (passed at, dropped)

    def filter(self, record: logging.LogRecord) -> bool:
        """True to log ``record``; repeats within the window are counted and dropped."""
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.window_s:
            self._seen[key] = (seen[0], seen[1] + 1)
            return False
        dropped = seen[1] if seen is not None else 0
        self._seen[key] = (now, 0)
        if dropped:
            record.msg = f"{record.msg} (suppressed={dropped} in the last {self.window_s:.0f}s)"
        return True


def limit_client_logs(window_s: float = DEFAULT_WINDOW_S) -> RepeatLimiter:
    """Attach one :class:`RepeatLimiter` to every Kafka client logger created so far.

    Logger filters do not apply to child loggers, so it goes on each module's logger (they
    exist once aiokafka and Faust are imported). Returns the filter.
    """
    limiter = RepeatLimiter(window_s)
    names = [
        name
        for name in list(logging.root.manager.loggerDict)
        if name.startswith(CLIENT_LOGGER_PREFIXES)
    ]
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatLimiter) for f in logger.filters):
            logger.addFilter(limiter)
    return limiter
