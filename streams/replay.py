"""The pure parts of ``churnguard replay``: pacing, and where a replay stopped.

A replay sends history in event-time order. ``--speed 10x`` keeps the gaps between events,
ten times faster; ``max`` sends as fast as the broker takes it. Progress is a small JSON
file: which input (a digest of the files, window and event count) and how many events of
it are acknowledged, so a replay stopped with Ctrl-C goes on from there when run again. A
resend after a crash between acknowledgement and the file write is harmless: the events
keep their ``event_id``s and churnguard drops the repeats.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from schemas import InputEvent

_SPEED = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*x\s*$")


def parse_speed(text: str) -> float | None:
    """Event seconds per wall second of ``Nx``; None for ``max`` (no pacing)."""
    if text.strip().lower() == "max":
        return None
    match = _SPEED.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"speed {text!r}: use a factor like 10x, or max")
    return float(match.group(1))


def wall_offset(event_ts: float, first_ts: float, speed: float | None) -> float:
    """Seconds after the replay's start at which an event is due (0 without pacing)."""
    return 0.0 if speed is None else max(0.0, event_ts - first_ts) / speed


def input_digest(specs: Sequence[str], window: str, events: Sequence[InputEvent]) -> str:
    """Identifies a replay's input: the files named, the window and the events' ids."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(orjson.dumps([list(specs), window, len(events)]))
    for event in events:
        digest.update(event.event_id.encode())
        digest.update(b"\x1f")
    return digest.hexdigest()


@dataclass(frozen=True)
class ReplayProgress:
    """How far a replay of one input got: the first ``sent`` events are acknowledged."""

    digest: str
    sent: int
    total: int

    @property
    def done(self) -> bool:
        """Every event was acknowledged."""
        return self.sent >= self.total


def load_progress(path: Path, digest: str) -> ReplayProgress | None:
    """The progress recorded for this input, or None (no file, another input, unreadable)."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("digest") != digest:
        return None
    sent, total = data.get("sent"), data.get("total")
    if not isinstance(sent, int) or not isinstance(total, int) or not 0 <= sent <= total:
        return None
    return ReplayProgress(digest, sent, total)


def save_progress(path: Path, progress: ReplayProgress) -> None:
    """Write the progress file atomically (a temporary file renamed over it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(
        orjson.dumps({"digest": progress.digest, "sent": progress.sent, "total": progress.total})
    )
    tmp.replace(path)
