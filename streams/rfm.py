"""Purchase histories summarised the way lifetimes does, from the same state code as the worker.

Used offline (``churnguard fit``) and by the CDNOW tests: events go through
:func:`streams.state.apply_event` exactly as in a worker, and the summary is the same
:func:`streams.features.purchase_history` the ``rfm_*`` features show, at the end of the
calibration day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

import numpy as np
import numpy.typing as npt

from schemas import InputEvent
from streams.features import purchase_history
from streams.state import CustomerState, StateConfig, apply_event


@dataclass(frozen=True)
class RfmTable:
    """Per customer with an order: repeat purchase days, recency, age (T) and monetary value."""

    customers: list[str]
    frequency: npt.NDArray[np.float64]
    recency: npt.NDArray[np.float64]
    age: npt.NDArray[np.float64]
    monetary: npt.NDArray[np.float64]


def end_of_day(day: date) -> float:
    """Epoch seconds of the last microsecond of ``day`` (UTC): the calibration instant."""
    return datetime.combine(day, time.max, tzinfo=UTC).timestamp()


def summarise(events: Iterable[InputEvent], end: date, config: StateConfig) -> RfmTable:
    """RFM of every customer with an order on or before ``end`` (later events are ignored)."""
    at = end_of_day(end)
    states: dict[str, CustomerState] = {}
    for event in events:
        if event.occurred_at.timestamp() > at:
            continue
        state = states.get(event.customer_id)
        if state is None:
            state = states[event.customer_id] = CustomerState(event.customer_id)
        apply_event(state, event, config)
    rows = [(s.customer_id, h) for s in states.values() if (h := purchase_history(s, at))]
    columns = np.array([h for _, h in rows], dtype=np.float64).reshape(-1, 4)
    return RfmTable(
        customers=[customer_id for customer_id, _ in rows],
        frequency=columns[:, 0],
        recency=columns[:, 1],
        age=columns[:, 2],
        monetary=columns[:, 3],
    )
