"""A progress bar on stderr (rate and ETA) for long offline commands: backtest, replay."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Redraws one line in a terminal; elsewhere prints a line every ``every`` seconds."""

    def __init__(
        self, total: int, what: str = "events", stream: TextIO | None = None, every: float = 5.0
    ) -> None:
        self.total = max(total, 0)
        self.what = what
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.2 if self.tty else every
        self.started = time.monotonic()
        self._shown = 0.0
        self.done = 0
        self.note = ""

    def line(self, done: int, note: str = "") -> str:
        """The progress line for ``done`` items: bar, count, rate, ETA (and ``note``)."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = done / elapsed
        frac = done / self.total if self.total else 1.0
        width = 24
        filled = int(width * min(frac, 1.0))
        eta = (self.total - done) / rate if rate > 0 and self.total > done else 0.0
        return (
            f"[{'#' * filled}{'.' * (width - filled)}] {frac * 100:5.1f}% "
            f"{done:,}/{self.total:,} {self.what}  {rate:,.0f}/s  ETA {eta:,.0f}s"
            + (f"  {note}" if note else "")
        )

    def update(self, done: int, note: str = "") -> None:
        """Show ``done`` items handled (throttled), with an optional ``note``."""
        self.done = done
        self.note = note
        now = time.monotonic()
        if now - self._shown < self.every:
            return
        self._shown = now
        end = "\r" if self.tty else "\n"
        self.stream.write(self.line(done, note) + end)
        self.stream.flush()

    def finish(self, done: int | None = None) -> float:
        """Print the last line; returns the seconds elapsed."""
        if done is not None:
            self.done = done
        self.stream.write(self.line(self.done, self.note) + "\n")
        self.stream.flush()
        return time.monotonic() - self.started
