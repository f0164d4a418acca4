"""The feature catalogue: named, typed, documented pure functions of (state, time).

Rules reference features by name; the engine computes only the ones a rule's CEL program
references. ``at`` is the evaluation time in epoch seconds (event time, never wall time).
Missing-data policy: a customer never seen doing X counts from when it was first seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streams.state import DAY, CustomerState, day_of, month_of, window_sum


@dataclass(frozen=True, slots=True)
class Feature:
    """One named input to rules."""

    name: str
    type: type
    description: str
    compute: Callable[[CustomerState, float], Any]
    changes_with_time: bool = False


def _days_since(ts: float | None, state: CustomerState, at: float) -> int:
    ref = ts if ts is not None else (state.first_seen_at if state.first_seen_at else at)
    return max(0, int((at - ref) // DAY))


def _days(state_buckets: dict[int, float], at: float, first_back: int, last_back: int) -> float:
    today = day_of(at)
    return window_sum(state_buckets, today - first_back, today - last_back)


def _departed_30d(s: CustomerState, at: float) -> int:
    return sum(1 for ts, _, _ in s.departures if at - 30 * DAY < ts <= at)


def _last_departed(s: CustomerState, at: float) -> str:
    return s.departures[-1][2] if s.departures else ""


def _revenue_365d(s: CustomerState, at: float) -> float:
    month = month_of(at)
    return round(float(window_sum(s.monthly_value, month - 12, month)), 2)


def _orders_365d(s: CustomerState, at: float) -> int:
    month = month_of(at)
    return int(window_sum(s.monthly_orders, month - 12, month))


_CATALOGUE: tuple[Feature, ...] = (
    Feature(
        "days_since_last_login",
        int,
        "whole days since the last login (since first seen if never)",
        lambda s, at: _days_since(s.last_login_at, s, at),
        changes_with_time=True,
    ),
    Feature(
        "logins_7d",
        int,
        "logins in the last 7 days, today included",
        lambda s, at: int(_days(s.logins, at, 6, 0)),
        changes_with_time=True,
    ),
    Feature(
        "logins_prev_28d_weekly_avg",
        float,
        "average logins per week in the 28 days before the last 7",
        lambda s, at: _days(s.logins, at, 34, 7) / 4.0,
        changes_with_time=True,
    ),
    Feature(
        "complaints_7d",
        int,
        "complaint tickets opened in the last 7 days",
        lambda s, at: int(_days(s.complaints, at, 6, 0)),
        changes_with_time=True,
    ),
    Feature(
        "complaints_90d_weekly_baseline",
        float,
        "complaints per week in the 90 days before the last 7 (the customer's own baseline)",
        lambda s, at: _days(s.complaints, at, 96, 7) * 7.0 / 90.0,
        changes_with_time=True,
    ),
    Feature(
        "tickets_30d",
        int,
        "tickets of any kind opened in the last 30 days",
        lambda s, at: int(_days(s.tickets, at, 29, 0)),
        changes_with_time=True,
    ),
    Feature("open_tickets", int, "tickets currently open", lambda s, at: len(s.open_tickets)),
    Feature(
        "open_critical_tickets",
        int,
        "open tickets of severity critical",
        lambda s, at: sum(1 for v in s.open_tickets.values() if v == "critical"),
    ),
    Feature(
        "key_contacts",
        int,
        "key contacts currently at the customer",
        lambda s, at: len(s.key_contacts),
    ),
    Feature(
        "key_contacts_departed_30d",
        int,
        "key contacts who left in the last 30 days",
        _departed_30d,
        changes_with_time=True,
    ),
    Feature(
        "last_departed_contact",
        str,
        "name of the key contact who left most recently ('' if none)",
        _last_departed,
    ),
    Feature(
        "days_since_last_order",
        int,
        "whole days since the last order (since first seen if never)",
        lambda s, at: _days_since(s.last_order_at, s, at),
        changes_with_time=True,
    ),
    Feature(
        "orders_90d",
        int,
        "orders placed in the last 90 days",
        lambda s, at: int(_days(s.orders, at, 89, 0)),
        changes_with_time=True,
    ),
    Feature("orders_365d", int, "orders in the last 13 calendar months", _orders_365d, True),
    Feature(
        "revenue_365d",
        float,
        "paid order value in the reporting currency, last 13 calendar months",
        _revenue_365d,
        changes_with_time=True,
    ),
    Feature("last_csat", int, "last CSAT score 1-5 (0 if none)", lambda s, at: s.last_csat or 0),
    Feature(
        "last_nps",
        int,
        "last NPS score 0-10 (-1 if none)",
        lambda s, at: -1 if s.last_nps is None else s.last_nps,
    ),
    Feature(
        "tenure_days",
        int,
        "whole days since the customer was first seen",
        lambda s, at: _days_since(s.first_seen_at, s, at),
        changes_with_time=True,
    ),
    Feature("name", str, "account name", lambda s, at: s.account.get("name", s.customer_id)),
    Feature("owner", str, "account manager id", lambda s, at: s.account.get("owner", "")),
    Feature("csm", str, "customer success manager id", lambda s, at: s.account.get("csm", "")),
    Feature("segment", str, "account segment", lambda s, at: s.account.get("segment", "")),
    Feature("region", str, "account region", lambda s, at: s.account.get("region", "")),
    Feature(
        "tier",
        str,
        "value tier (tier_override from the account until tiers are computed; else 'normal')",
        lambda s, at: s.account.get("tier_override", "normal"),
    ),
    Feature("customer_id", str, "the customer id", lambda s, at: s.customer_id),
)

FEATURES: dict[str, Feature] = {f.name: f for f in _CATALOGUE}


def compute(state: CustomerState, at: float, names: frozenset[str] | None = None) -> dict[str, Any]:
    """Values of the named features (all when ``names`` is None) for ``state`` at ``at``."""
    wanted = FEATURES.values() if names is None else (FEATURES[n] for n in names)
    return {f.name: f.compute(state, at) for f in wanted}


def next_change(state: CustomerState, at: float, names: frozenset[str]) -> float | None:
    """Earliest time after ``at`` when a time-dependent feature in ``names`` may change.

    Day granularity: day counters tick at whole days since their reference time, windowed
    counts at UTC midnight. Nothing is due for a customer with no time-dependent inputs.
    """
    candidates: list[float] = []
    ref_of = {
        "days_since_last_login": state.last_login_at,
        "days_since_last_order": state.last_order_at,
        "tenure_days": state.first_seen_at,
    }
    for name, ts in ref_of.items():
        if name in names:
            ref = ts if ts is not None else state.first_seen_at
            if ref is not None:
                candidates.append(ref + ((at - ref) // DAY + 1) * DAY)
    windowed = {f.name for f in _CATALOGUE if f.changes_with_time} - ref_of.keys()
    if names & windowed and _has_windowed_data(state):
        candidates.append((day_of(at) + 1) * DAY)
    return min(candidates) if candidates else None


def _has_windowed_data(state: CustomerState) -> bool:
    return bool(
        state.logins
        or state.complaints
        or state.tickets
        or state.orders
        or state.departures
        or state.monthly_value
    )
