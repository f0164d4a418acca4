"""Business hours: when a task due "in 16 business hours" is really due."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

MAX_DAYS_SEARCHED = 3660


@dataclass(frozen=True)
class BusinessCalendar:
    """Working hours on working days, in one time zone."""

    timezone: str = "UTC"
    opens: time = time(9, 0)
    closes: time = time(17, 0)
    weekdays: frozenset[int] = field(default_factory=lambda: frozenset(range(5)))  # Mon=0

    def __post_init__(self) -> None:
        if self.closes <= self.opens:
            raise ValueError("business hours must close after they open")
        if not self.weekdays:
            raise ValueError("business hours need at least one working day")
        ZoneInfo(self.timezone)  # fail early on an unknown zone

    def add(self, start: float, seconds: float) -> float:
        """The epoch time ``seconds`` of business time after ``start``."""
        zone = ZoneInfo(self.timezone)
        local = datetime.fromtimestamp(start, UTC).astimezone(zone)
        left = timedelta(seconds=seconds)
        day = local.date()
        for _ in range(MAX_DAYS_SEARCHED):
            if day.weekday() in self.weekdays:
                opens = datetime.combine(day, self.opens, zone)
                closes = datetime.combine(day, self.closes, zone)
                begin = max(opens, local)
                if begin < closes:
                    if begin + left <= closes:
                        return (begin + left).timestamp()
                    left -= closes - begin
            day += timedelta(days=1)
        raise ValueError("no business time found within ten years")
