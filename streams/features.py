"""The feature catalogue: named, typed, documented pure functions of (state, time).

Rules reference features by name; the engine computes only the ones a rule's CEL program
references. ``at`` is the evaluation time in epoch seconds (event time, never wall time).
Missing-data policy: a customer never seen doing X counts from when it was first seen.

Each feature also says what can change its value: ``depends_on`` names the input event kinds
(and ``"alerts"``, the customer's alert records) whose arrival may change it, and a feature
whose value moves with time alone has ``next_change``, the exact next moment it does. Day
counters that step by one a day have ``reaches``, the moment they become a given value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise, repeat
from math import inf, nextafter
from typing import Any, Final

from schemas import EVENT_KINDS
from streams.state import (
    DAY,
    DEPARTURES_KEPT_S,
    CustomerState,
    Number,
    day_of,
    month_of,
    month_start,
    window_sum,
)

EVENTS: Final = frozenset(EVENT_KINDS)
"""Every input event kind ("login", "order", …): what can change ``first_seen_at``."""
SOURCES: Final = EVENTS | {"alerts", "scores"}
"""Everything a feature value can depend on besides time ("scores": the scoring step)."""

CATALOGUE_VERSION = "2026-11-23"
"""Part of the rules fingerprint stored with each deadline: change it when a feature's value
or time behaviour changes, so workers recompute deadlines written by older code."""
WEEKS_COMPARED: Final = 8
MAX_DAYS: Final = 1_000_000  # day counters are not followed further (~2700 years)
HIGH_SEVERITIES: Final = frozenset({"high", "critical"})

NextChange = Callable[[CustomerState, float], float | None]
Reaches = Callable[[CustomerState, float, int], float | None]
Crosses = Callable[[CustomerState, float, float], float | None]


@dataclass(frozen=True, slots=True)
class Feature:
    """One named input to rules.

    ``next_change(state, at)``: the earliest time after ``at`` at which the value differs from
    its value at ``at`` with no new input (None: never); set exactly when
    ``changes_with_time``. ``reaches(state, at, v)``: the earliest time after ``at`` at which
    the value becomes ``v`` with no new input (None: it already is ``v``, or never will be).
    """

    name: str
    type: type
    description: str
    compute: Callable[[CustomerState, float], Any]
    changes_with_time: bool = False
    depends_on: frozenset[str] = field(kw_only=True)
    next_change: NextChange | None = field(default=None, kw_only=True)
    reaches: Reaches | None = field(default=None, kw_only=True)
    counts_down: bool = field(default=False, kw_only=True)  # a day counter that decreases
    # for a value that only grows with time: the earliest time after ``at`` it is >= x
    crosses: Crosses | None = field(default=None, kw_only=True)
    # time-changing features whose changes are the only times this one can change: their
    # (cached, shared) next changes are a cheap, possibly early, wake-up for this one
    moves_with: tuple[str, ...] = field(default=(), kw_only=True)
    # the same value from other features' values, for callers that have them at hand
    derive: tuple[tuple[str, ...], Callable[..., Any]] | None = field(default=None, kw_only=True)
    # the value depends on the time only through its UTC day: it changes at midnight UTC only
    daily: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        if self.changes_with_time != (self.next_change is not None):
            raise ValueError(f"{self.name}: next_change must be set iff changes_with_time")
        if (self.reaches or self.crosses) is not None and not self.changes_with_time:
            raise ValueError(f"{self.name}: reaches and crosses need changes_with_time")
        if self.daily and not self.changes_with_time:
            raise ValueError(f"{self.name}: daily needs changes_with_time")
        if not self.depends_on <= SOURCES:
            raise ValueError(f"{self.name}: unknown sources {set(self.depends_on - SOURCES)}")


# -- time search ------------------------------------------------------------------------------
def _first_after(at: float, guess: float, done: Callable[[float], bool]) -> float:
    """The smallest float after ``at`` at which ``done`` holds.

    ``done`` must be false up to some moment and true from then on, and ``guess`` must lie
    within a few float steps of that moment.
    """
    t = guess if guess > at else nextafter(at, inf)
    while not done(t):
        t = nextafter(t, inf)
    while True:
        before = nextafter(t, -inf)
        if before <= at or not done(before):
            return t
        t = before


# -- day counters -----------------------------------------------------------------------------
def _days_since(ts: float | None, state: CustomerState, at: float) -> int:
    ref = ts if ts is not None else (state.first_seen_at if state.first_seen_at else at)
    return _since(ref, at)


def _since(ref: float, t: float) -> int:
    days = int((t - ref) // DAY)
    return days if days > 0 else 0  # not max(): compiled, a call through the builtin


def _ref(ts: float | None, state: CustomerState) -> float | None:
    """The reference time of a days-since counter; None when it stays 0."""
    return ts if ts is not None else (state.first_seen_at or None)


def _day_start(ref: float, value: int) -> float:
    """The first moment at which whole days since ``ref`` reach ``value`` (``value`` ≥ 1)."""
    guess = ref + value * DAY
    # nearly always exact: the float before it is still a day short (two comparisons, where
    # the search below, even cached, costs a call through lru_cache)
    if guess > ref and (guess - ref) // DAY >= value:
        before = nextafter(guess, -inf)
        if before <= ref or (before - ref) // DAY < value:
            return guess
    return _day_start_searched(ref, value)


@lru_cache(maxsize=1 << 16)
def _day_start_searched(ref: float, value: int) -> float:
    """``_day_start`` where rounding moved it off ``ref + value * DAY``, searched float by
    float; kept, since a customer's references (first seen, last order) stay the same for
    many evaluations."""
    return _first_after(ref, ref + value * DAY, lambda t: _since(ref, t) >= value)


def _next_day_of(ref: float | None, at: float) -> float | None:
    """When a whole-days-since-``ref`` counter next steps up (None: no reference)."""
    if ref is None:
        return None
    return _day_start(ref, _since(ref, at) + 1)


def _day_reached(ref: float | None, at: float, value: int) -> float | None:
    """When a whole-days-since-``ref`` counter becomes ``value`` (None: already, or never)."""
    if ref is None or value > MAX_DAYS or value <= _since(ref, at):
        return None
    return _day_start(ref, value)


def _since_next(ts: float | None, state: CustomerState, at: float) -> float | None:
    return _next_day_of(_ref(ts, state), at)


def _since_reaches(ts: float | None, state: CustomerState, at: float, value: int) -> float | None:
    return _day_reached(_ref(ts, state), at, value)


def _to_renewal(s: CustomerState, at: float) -> int:
    return 0 if s.renewal_at is None else int((s.renewal_at - at) // DAY)


def _to_renewal_next(s: CustomerState, at: float) -> float | None:
    r = s.renewal_at
    if r is None:
        return None
    return _days_left_at_most(r, at, int((r - at) // DAY) - 1)


def _to_renewal_reaches(s: CustomerState, at: float, value: int) -> float | None:
    r = s.renewal_at
    if r is None or value < -MAX_DAYS or value >= int((r - at) // DAY):
        return None
    return _days_left_at_most(r, at, value)


def _days_left_at_most(r: float, at: float, value: int) -> float:
    """The first moment after ``at`` with at most ``value`` whole days left until ``r``
    (more are left at ``at``)."""
    guess = r - (value + 1) * DAY
    # nearly always the float just after ``guess``: two comparisons confirm it, where the
    # search makes a closure and steps float by float
    after = nextafter(guess, inf)
    if after > at and (r - after) // DAY <= value and not (r - guess) // DAY <= value:
        return after
    return _first_after(at, guess, lambda t: (r - t) // DAY <= value)


# -- windows over daily buckets ----------------------------------------------------------------
def _days(state_buckets: dict[int, Number], at: float, first_back: int, last_back: int) -> float:
    today = day_of(at)
    return window_sum(state_buckets, today - first_back, today - last_back)


def _first_window_change(
    buckets: dict[int, Number], now: int, first_back: int, last_back: int
) -> int | None:
    """The first slot after ``now`` whose window ``[slot - first_back, slot - last_back]`` sums
    to something else than the window of the slot before it."""
    if not buckets:
        return None
    # one slot enters and one leaves each step: a change unless their values match
    end = max(buckets) + first_back + 1  # no window changes after the newest slot has left
    if end - now <= 2 * len(buckets):  # dense: step through the slots from ``now`` on
        for slot in range(now + 1, end + 1):
            if buckets.get(slot - last_back, 0) != buckets.get(slot - first_back - 1, 0):
                return slot
        return None
    best = inf
    for slot, v in buckets.items():
        if v:
            enter = slot + last_back
            if now < enter < best and buckets.get(enter - first_back - 1, 0) != v:
                best = float(enter)
            leave = slot + first_back + 1
            if now < leave < best and buckets.get(leave - last_back, 0) != v:
                best = float(leave)
    return None if best == inf else int(best)


def _days_next(
    buckets: dict[int, Number], at: float, first_back: int, last_back: int
) -> float | None:
    day = _first_window_change(buckets, day_of(at), first_back, last_back)
    return None if day is None else day * DAY


def _window(
    bucket_of: Callable[[CustomerState], dict[int, Number]], first_back: int, last_back: int
) -> tuple[Callable[[CustomerState, float], float], NextChange]:
    def value(s: CustomerState, at: float) -> float:
        return _days(bucket_of(s), at, first_back, last_back)

    def next_change(s: CustomerState, at: float) -> float | None:
        return _days_next(bucket_of(s), at, first_back, last_back)

    return value, next_change


_logins_7d, _logins_7d_next = _window(lambda s: s.logins, 6, 0)
_logins_prev, _logins_prev_next = _window(lambda s: s.logins, 34, 7)
_complaints_7d, _complaints_7d_next = _window(lambda s: s.complaints, 6, 0)
_complaints_base, _complaints_base_next = _window(lambda s: s.complaints, 96, 7)
_tickets_30d, _tickets_30d_next = _window(lambda s: s.tickets, 29, 0)
_orders_90d, _orders_90d_next = _window(lambda s: s.orders, 89, 0)


def _weeks_declining(s: CustomerState, at: float) -> int:
    # weeks of 7 days back from today, compared newest first while each has fewer logins
    # than the one before it; only the weeks compared are summed (counts: sums are exact)
    get = s.logins.get
    newest = day_of(at)
    week = sum(map(get, range(newest - 6, newest + 1), repeat(0.0)))
    n = 0
    while n < WEEKS_COMPARED:
        newest -= 7
        before = sum(map(get, range(newest - 6, newest + 1), repeat(0.0)))
        if not week < before:
            break
        week = before
        n += 1
    return n


def _weeks_declining_next(s: CustomerState, at: float) -> float | None:
    logins = s.logins
    if not logins:
        return None
    today = day_of(at)
    # from the day the newest bucket is 14 days old, this week and the last are both empty
    end = max(logins) + 15
    if end <= today + 1:
        return None
    first = today - 7 * WEEKS_COMPARED - 6
    prefix = _login_prefix(logins, first, end)
    now = _falling(prefix, first, today)
    for day in range(today + 1, end):
        if _falling(prefix, first, day) != now:
            return day * DAY
    return None


def _login_prefix(logins: dict[int, Number], first: int, end: int) -> list[int]:
    """prefix[i]: the logins on the days from ``first`` to ``first + i - 1``."""
    # from the customer's few login days, not a lookup per day of the range; login buckets
    # hold counts, so the sums are ints (small ones: no object made per element)
    counts = [0] * (end - first)
    for day, n in logins.items():
        if first <= day < end:
            counts[day - first] = int(n)
    prefix = [0] * (end - first + 1)
    total = 0
    for i, n in enumerate(counts):
        total += n
        prefix[i + 1] = total
    return prefix


def _falling(prefix: list[int], first: int, day: int) -> int:
    """``_weeks_declining`` at ``day`` from prefix sums of daily logins starting at ``first``."""
    newest = day - first + 1
    n = 0
    week = prefix[newest] - prefix[newest - 7]
    while n < WEEKS_COMPARED:
        newest -= 7
        before = prefix[newest] - prefix[newest - 7]
        if not week < before:
            break
        week = before
        n += 1
    return n


# -- monthly windows --------------------------------------------------------------------------
def _revenue_365d(s: CustomerState, at: float) -> float:
    month = month_of(at)
    return round(float(window_sum(s.monthly_value, month - 12, month)), 2)


def _orders_365d(s: CustomerState, at: float) -> int:
    month = month_of(at)
    return int(window_sum(s.monthly_orders, month - 12, month))


def _orders_365d_next(s: CustomerState, at: float) -> float | None:
    month = _first_window_change(s.monthly_orders, month_of(at), 12, 0)
    return None if month is None else month_start(month)


def _revenue_365d_next(s: CustomerState, at: float) -> float | None:
    now = _revenue_365d(s, at)
    month: int | None = month_of(at)
    while month is not None:
        month = _first_window_change(s.monthly_value, month, 12, 0)
        if month is not None and _revenue_365d(s, month_start(month)) != now:
            return month_start(month)  # a change of less than a cent does not show
    return None


# -- contacts ---------------------------------------------------------------------------------
def _departed_30d(s: CustomerState, at: float) -> int:
    return sum(1 for ts, _, _ in s.departures if at - 30 * DAY < ts <= at)


def _ages_out(ts: float, at: float) -> float:
    """When a departure at ``ts``, counted at ``at``, stops counting."""
    return _first_after(at, ts + 30 * DAY, lambda t: not t - 30 * DAY < ts)


def _departed_30d_next(s: CustomerState, at: float) -> float | None:
    delta: dict[float, int] = {}
    for ts, _, _ in s.departures:
        if ts > at:
            delta[ts] = delta.get(ts, 0) + 1
        elif at - 30 * DAY < ts:
            gone = _ages_out(ts, at)
            delta[gone] = delta.get(gone, 0) - 1
    return min((t for t, v in delta.items() if v), default=None)


def _last_departed(s: CustomerState, at: float) -> str:
    # departures are sorted by time and kept DEPARTURES_KEPT_S: pruning never changes this
    if not s.departures or s.departures[-1][0] < at - DEPARTURES_KEPT_S:
        return ""
    return s.departures[-1][2]


def _last_departed_next(s: CustomerState, at: float) -> float | None:
    if not _last_departed(s, at):
        return None
    ts = s.departures[-1][0]
    return _first_after(at, ts + DEPARTURES_KEPT_S, lambda t: ts < t - DEPARTURES_KEPT_S)


# -- orders, CSAT, alerts ----------------------------------------------------------------------
def _order_gap_median_days(s: CustomerState, at: float) -> float:
    times = s.order_times
    if len(times) < 2:
        return 0.0
    gaps = sorted(b - a for a, b in pairwise(times))  # at most 15
    mid = len(gaps) // 2
    median = gaps[mid] if len(gaps) % 2 else (gaps[mid - 1] + gaps[mid]) / 2.0
    return median / DAY


def _csat_avg_last3(s: CustomerState, at: float) -> float:
    scores = s.csat_recent
    return sum(scores) / len(scores) if scores else 0.0


def _open_high_alerts(s: CustomerState, at: float) -> int:
    return sum(
        1 for a in s.alerts.values() if a.get("s") == "firing" and a.get("sev") in HIGH_SEVERITIES
    )


# -- purchase history (lifetimes' RFM definitions, days) ---------------------------------------
def _rfm_frequency(s: CustomerState, at: float) -> int:
    return s.rfm_days - 1 if s.rfm_days > 1 else 0


def _rfm_recency(s: CustomerState, at: float) -> int:
    first, last = s.rfm_first_day, s.rfm_last_day
    return 0 if first is None or last is None else last - first


def _rfm_age(s: CustomerState, at: float) -> int:
    first = s.rfm_first_day
    if first is None:
        return 0
    today = day_of(at)
    return today - first if today > first else 0


def _rfm_age_next(s: CustomerState, at: float) -> float | None:
    first = s.rfm_first_day
    if first is None:
        return None
    today = day_of(at)
    return ((today if today > first else first) + 1) * DAY


def _rfm_age_reaches(s: CustomerState, at: float, value: int) -> float | None:
    first = s.rfm_first_day
    if first is None or value <= _rfm_age(s, at) or value > MAX_DAYS:
        return None
    return (first + value) * DAY


def _rfm_monetary(s: CustomerState, at: float) -> float:
    repeat_days = s.rfm_days - 1
    return s.rfm_repeat_value / repeat_days if repeat_days > 0 else 0.0


def purchase_history(s: CustomerState, at: float) -> tuple[int, int, int, float] | None:
    """(frequency, recency, T, monetary) in lifetimes' terms at ``at``; None before an order."""
    if s.rfm_first_day is None:
        return None
    return _rfm_frequency(s, at), _rfm_recency(s, at), _rfm_age(s, at), _rfm_monetary(s, at)


# -- ratios for the health score --------------------------------------------------------------
def _login_activity_ratio(s: CustomerState, at: float) -> float:
    return _activity_ratio(_logins_7d(s, at), _logins_prev(s, at) / 4.0)


def _activity_ratio(recent: float, prev_weekly: float) -> float:
    if prev_weekly > 0:
        return recent / prev_weekly
    return 1.0 if recent > 0 else 0.0


def _earlier(a: float | None, b: float | None) -> float | None:
    """The earlier of two change times (None: no change)."""
    if a is None:
        return b
    if b is None or a <= b:
        return a
    return b


# An input can change and leave the value as it is, so the next changes below step from
# input change to input change until the value moves (written out per feature: compiled,
# a function passed as an argument is called through the interpreter's calling convention).
def _login_windows_next(s: CustomerState, at: float) -> float | None:
    return _earlier(_logins_7d_next(s, at), _logins_prev_next(s, at))


def _login_activity_next(s: CustomerState, at: float) -> float | None:
    now = _login_activity_ratio(s, at)
    t = _login_windows_next(s, at)
    while t is not None and _login_activity_ratio(s, t) == now:
        t = _login_windows_next(s, t)
    return t


def _order_overdue_ratio(s: CustomerState, at: float) -> float:
    median = _order_gap_median_days(s, at)
    return _days_since(s.last_order_at, s, at) / median if median > 0 else 0.0


def _order_overdue_next(s: CustomerState, at: float) -> float | None:
    if _order_gap_median_days(s, at) <= 0:
        return None
    return _since_next(s.last_order_at, s, at)


def _order_overdue_crosses(s: CustomerState, at: float, x: float) -> float | None:
    median = _order_gap_median_days(s, at)
    if median <= 0 or x <= _order_overdue_ratio(s, at):
        return None
    days = max(0, int(x * median) - 1)
    while days / median < x:  # the first whole day count at or above x times the median
        days += 1
    return _since_reaches(s.last_order_at, s, at, days)


def _revenue_months(s: CustomerState, at: float, first_back: int, last_back: int) -> float:
    month = month_of(at)
    return float(window_sum(s.monthly_value, month - first_back, month - last_back))


def _revenue_rising(s: CustomerState, at: float) -> bool:
    return _revenue_months(s, at, 2, 0) > _revenue_months(s, at, 5, 3)


def _revenue_windows_next(s: CustomerState, at: float) -> float | None:
    now = month_of(at)
    recent = _first_window_change(s.monthly_value, now, 2, 0)
    before = _first_window_change(s.monthly_value, now, 5, 3)
    if recent is None or (before is not None and before < recent):
        recent = before
    return None if recent is None else month_start(recent)


def _revenue_rising_next(s: CustomerState, at: float) -> float | None:
    now = _revenue_rising(s, at)
    t = _revenue_windows_next(s, at)
    while t is not None and _revenue_rising(s, t) == now:
        t = _revenue_windows_next(s, t)
    return t


# -- the scoring step's results ----------------------------------------------------------------
def _score(key: str, default: Any) -> Callable[[CustomerState, float], Any]:
    return lambda s, at: s.scores.get(key, default)


def _since_tier_change(s: CustomerState, at: float) -> int:
    since = s.scores.get("tier_since")
    return 0 if since is None else _since(since, at)


LOGIN: Final = frozenset({"login"})
ORDER: Final = frozenset({"order"})
TICKET: Final = frozenset({"ticket"})
CONTACT: Final = frozenset({"contact"})
ACCOUNT: Final = frozenset({"account"})
SCORES: Final = frozenset({"scores"})

_CATALOGUE: tuple[Feature, ...] = (
    Feature(
        "days_since_last_login",
        int,
        "whole days since the last login (since first seen if never)",
        lambda s, at: _days_since(s.last_login_at, s, at),
        changes_with_time=True,
        depends_on=EVENTS,
        next_change=lambda s, at: _since_next(s.last_login_at, s, at),
        reaches=lambda s, at, v: _since_reaches(s.last_login_at, s, at, v),
    ),
    Feature(
        "logins_7d",
        int,
        "logins in the last 7 days, today included",
        lambda s, at: int(_logins_7d(s, at)),
        changes_with_time=True,
        depends_on=LOGIN,
        next_change=_logins_7d_next,
        daily=True,
    ),
    Feature(
        "logins_prev_28d_weekly_avg",
        float,
        "average logins per week in the 28 days before the last 7",
        lambda s, at: _logins_prev(s, at) / 4.0,
        changes_with_time=True,
        depends_on=LOGIN,
        next_change=_logins_prev_next,
        daily=True,
    ),
    Feature(
        "login_weeks_declining",
        int,
        "consecutive weeks (up to 8, newest first) with fewer logins than the week before",
        _weeks_declining,
        changes_with_time=True,
        depends_on=LOGIN,
        next_change=_weeks_declining_next,
        daily=True,
    ),
    Feature(
        "complaints_7d",
        int,
        "complaint tickets opened in the last 7 days",
        lambda s, at: int(_complaints_7d(s, at)),
        changes_with_time=True,
        depends_on=TICKET,
        next_change=_complaints_7d_next,
        daily=True,
    ),
    Feature(
        "complaints_90d_weekly_baseline",
        float,
        "complaints per week in the 90 days before the last 7 (the customer's own baseline)",
        lambda s, at: _complaints_base(s, at) * 7.0 / 90.0,
        changes_with_time=True,
        depends_on=TICKET,
        next_change=_complaints_base_next,
        daily=True,
    ),
    Feature(
        "tickets_30d",
        int,
        "tickets of any kind opened in the last 30 days",
        lambda s, at: int(_tickets_30d(s, at)),
        changes_with_time=True,
        depends_on=TICKET,
        next_change=_tickets_30d_next,
        daily=True,
    ),
    Feature(
        "open_tickets",
        int,
        "tickets currently open",
        lambda s, at: len(s.open_tickets),
        depends_on=TICKET,
    ),
    Feature(
        "open_critical_tickets",
        int,
        "open tickets of severity critical",
        lambda s, at: sum(1 for v in s.open_tickets.values() if v == "critical"),
        depends_on=TICKET,
    ),
    Feature(
        "key_contacts",
        int,
        "key contacts currently at the customer",
        lambda s, at: len(s.key_contacts),
        depends_on=CONTACT,
    ),
    Feature(
        "key_contacts_departed_30d",
        int,
        "key contacts who left in the last 30 days",
        _departed_30d,
        changes_with_time=True,
        depends_on=CONTACT,
        next_change=_departed_30d_next,
    ),
    Feature(
        "last_departed_contact",
        str,
        "name of the key contact who left most recently, within 90 days ('' if none)",
        _last_departed,
        changes_with_time=True,
        depends_on=CONTACT,
        next_change=_last_departed_next,
    ),
    Feature(
        "days_since_last_order",
        int,
        "whole days since the last order (since first seen if never)",
        lambda s, at: _days_since(s.last_order_at, s, at),
        changes_with_time=True,
        depends_on=EVENTS,
        next_change=lambda s, at: _since_next(s.last_order_at, s, at),
        reaches=lambda s, at, v: _since_reaches(s.last_order_at, s, at, v),
    ),
    Feature(
        "orders_90d",
        int,
        "orders placed in the last 90 days",
        lambda s, at: int(_orders_90d(s, at)),
        changes_with_time=True,
        depends_on=ORDER,
        next_change=_orders_90d_next,
        daily=True,
    ),
    Feature(
        "orders_365d",
        int,
        "orders in the last 13 calendar months",
        _orders_365d,
        changes_with_time=True,
        depends_on=ORDER,
        next_change=_orders_365d_next,
        daily=True,
    ),
    Feature(
        "revenue_365d",
        float,
        "paid order value in the reporting currency, last 13 calendar months",
        _revenue_365d,
        changes_with_time=True,
        depends_on=ORDER,
        next_change=_revenue_365d_next,
        daily=True,
    ),
    Feature(
        "order_count",
        int,
        "orders remembered for the order rhythm (the last 16 placed or paid, not cancelled)",
        lambda s, at: len(s.order_times),
        depends_on=ORDER,
    ),
    Feature(
        "order_gap_median_days",
        float,
        "median days between consecutive remembered orders (0.0 with fewer than 2)",
        _order_gap_median_days,
        depends_on=ORDER,
    ),
    Feature(
        "last_csat",
        int,
        "last CSAT score 1-5 (0 if none)",
        lambda s, at: s.last_csat or 0,
        depends_on=TICKET,
    ),
    Feature(
        "csat_avg_last3",
        float,
        "mean of the last 3 CSAT scores (0.0 if none)",
        _csat_avg_last3,
        depends_on=TICKET,
    ),
    Feature(
        "csat_count",
        int,
        "CSAT scores in csat_avg_last3 (0-3)",
        lambda s, at: len(s.csat_recent),
        depends_on=TICKET,
    ),
    Feature(
        "last_nps",
        int,
        "last NPS score 0-10 (-1 if none)",
        lambda s, at: -1 if s.last_nps is None else s.last_nps,
        depends_on=TICKET,
    ),
    Feature(
        "tenure_days",
        int,
        "whole days since the customer was first seen",
        lambda s, at: _days_since(s.first_seen_at, s, at),
        changes_with_time=True,
        depends_on=EVENTS,
        next_change=lambda s, at: _since_next(s.first_seen_at, s, at),
        reaches=lambda s, at, v: _since_reaches(s.first_seen_at, s, at, v),
    ),
    Feature(
        "days_to_renewal",
        int,
        "whole days until the renewal date, negative after it (0 if none known)",
        _to_renewal,
        changes_with_time=True,
        depends_on=ACCOUNT,
        next_change=_to_renewal_next,
        reaches=_to_renewal_reaches,
        counts_down=True,
    ),
    Feature(
        "has_renewal_date",
        bool,
        "the account has a renewal date",
        lambda s, at: s.renewal_at is not None,
        depends_on=ACCOUNT,
    ),
    Feature(
        "open_high_alerts",
        int,
        "firing alerts of severity high or critical for the customer (alerts of rules that "
        "read this feature do not count, so such a rule cannot keep itself firing)",
        _open_high_alerts,
        depends_on=frozenset({"alerts"}),
    ),
    Feature(
        "name",
        str,
        "account name",
        lambda s, at: s.account.get("name", s.customer_id),
        depends_on=ACCOUNT,
    ),
    Feature(
        "owner",
        str,
        "account manager id",
        lambda s, at: s.account.get("owner", ""),
        depends_on=ACCOUNT,
    ),
    Feature(
        "csm",
        str,
        "customer success manager id",
        lambda s, at: s.account.get("csm", ""),
        depends_on=ACCOUNT,
    ),
    Feature(
        "segment",
        str,
        "account segment",
        lambda s, at: s.account.get("segment", ""),
        depends_on=ACCOUNT,
    ),
    Feature(
        "region",
        str,
        "account region",
        lambda s, at: s.account.get("region", ""),
        depends_on=ACCOUNT,
    ),
    Feature(
        "rfm_frequency",
        int,
        "repeat purchase days: days with an order, the first one not counted (lifetimes)",
        _rfm_frequency,
        depends_on=ORDER,
    ),
    Feature(
        "rfm_recency_days",
        int,
        "days between the first and the last purchase day (lifetimes' recency)",
        _rfm_recency,
        depends_on=ORDER,
    ),
    Feature(
        "rfm_age_days",
        int,
        "days since the first purchase day (lifetimes' T; 0 before the first order)",
        _rfm_age,
        changes_with_time=True,
        depends_on=ORDER,
        next_change=_rfm_age_next,
        reaches=_rfm_age_reaches,
        daily=True,
    ),
    Feature(
        "rfm_monetary",
        float,
        "average value per repeat purchase day, reporting currency (0.0 without repeats)",
        _rfm_monetary,
        depends_on=ORDER,
    ),
    Feature(
        "login_activity_ratio",
        float,
        "logins in the last 7 days over the weekly average of the 28 before (no history "
        "before: 1.0 with recent logins, else 0.0)",
        _login_activity_ratio,
        changes_with_time=True,
        depends_on=LOGIN,
        next_change=_login_activity_next,
        moves_with=("logins_7d", "logins_prev_28d_weekly_avg"),
        derive=(("logins_7d", "logins_prev_28d_weekly_avg"), _activity_ratio),
        daily=True,
    ),
    Feature(
        "order_overdue_ratio",
        float,
        "days since the last order over the median gap between orders (0.0 with fewer than 2)",
        _order_overdue_ratio,
        changes_with_time=True,
        depends_on=ORDER,  # with 2 orders or more, first-seen no longer matters
        next_change=_order_overdue_next,
        crosses=_order_overdue_crosses,
    ),
    Feature(
        "revenue_rising",
        bool,
        "paid value in this and the 2 calendar months before exceeds the 3 months before them",
        _revenue_rising,
        changes_with_time=True,
        depends_on=ORDER,
        next_change=_revenue_rising_next,
        daily=True,
    ),
    Feature(
        "tier",
        str,
        "value tier from the tier definitions; the account's tier_override wins",
        lambda s, at: s.scores.get("tier") or s.account.get("tier_override", "normal"),
        depends_on=SCORES | ACCOUNT,  # the override alone when scoring is off
    ),
    Feature(
        "previous_tier",
        str,
        "the tier before the last tier change ('' if it never changed)",
        _score("prev_tier", ""),
        depends_on=SCORES,
    ),
    Feature(
        "tier_downgraded",
        bool,
        "the last tier change went to a lower tier (lower in the definitions' order)",
        _score("downgraded", False),
        depends_on=SCORES,
    ),
    Feature(
        "days_since_tier_change",
        int,
        "whole days since the tier last changed (0 if it never did)",
        _since_tier_change,
        changes_with_time=True,
        depends_on=SCORES,
        next_change=lambda s, at: _next_day_of(s.scores.get("tier_since"), at),
        reaches=lambda s, at, v: _day_reached(s.scores.get("tier_since"), at, v),
    ),
    Feature(
        "health_score",
        int,
        "health 0-100 from the weighted factor points (see docs/scoring.md)",
        _score("health", 100),
        depends_on=SCORES,
    ),
    Feature(
        "health_trend_7d",
        int,
        "health now minus health 7 days ago (0 without a score that old)",
        _score("trend", 0),
        depends_on=SCORES,
    ),
    Feature(
        "lifecycle_stage",
        str,
        "lifecycle stage from the stage definitions (new, growing, mature, declining, churned)",
        _score("stage", ""),
        depends_on=SCORES,
    ),
    Feature(
        "rfm_r_score",
        int,
        "recency quintile 1-5 against the population, 5 = most recent (0: no orders or no "
        "cut points yet)",
        _score("r", 0),
        depends_on=SCORES,
    ),
    Feature(
        "rfm_f_score",
        int,
        "frequency quintile 1-5, 5 = most repeat purchase days (0: no orders or cut points)",
        _score("f", 0),
        depends_on=SCORES,
    ),
    Feature(
        "rfm_m_score",
        int,
        "monetary quintile 1-5, 5 = highest average repeat value (0: no orders or cut points)",
        _score("m", 0),
        depends_on=SCORES,
    ),
    Feature(
        "expected_orders_90d",
        float,
        "BG/NBD expected purchase days in the next 90 days (0.0 without a fitted model)",
        _score("eo90", 0.0),
        depends_on=SCORES,
    ),
    Feature(
        "p_alive",
        float,
        "BG/NBD probability the customer is still active (1.0 for one-time buyers by "
        "construction; 1.0 without a fitted model)",
        _score("p_alive", 1.0),
        depends_on=SCORES,
    ),
    Feature(
        "clv_12m",
        float,
        "expected value of the next 12 months, discounted monthly (BG/NBD x Gamma-Gamma)",
        _score("clv", 0.0),
        depends_on=SCORES,
    ),
    Feature(
        "customer_id",
        str,
        "the customer id",
        lambda s, at: s.customer_id,
        depends_on=frozenset(),
    ),
)

FEATURES: Final[dict[str, Feature]] = {f.name: f for f in _CATALOGUE}

KINDS_CHANGING: Final[dict[str, frozenset[str]]] = {
    kind: frozenset(f.name for f in _CATALOGUE if kind in f.depends_on) for kind in sorted(SOURCES)
}
"""Input event kind (or ``"alerts"``) → the features whose value it can change."""


def compute(state: CustomerState, at: float, names: frozenset[str] | None = None) -> dict[str, Any]:
    """Values of the named features (all when ``names`` is None) for ``state`` at ``at``."""
    wanted = FEATURES.values() if names is None else (FEATURES[n] for n in names)
    return {f.name: f.compute(state, at) for f in wanted}


def next_change(state: CustomerState, at: float, names: frozenset[str]) -> float | None:
    """Earliest time after ``at`` at which a feature in ``names`` changes by time alone.

    None when none of them will change without new input.
    """
    best: float | None = None
    for name in names:
        find = FEATURES[name].next_change
        if find is not None:
            t = find(state, at)
            if t is not None and (best is None or t < best):
                best = t
    return best
