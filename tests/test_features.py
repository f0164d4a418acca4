"""Unit tests for the feature catalogue (streams.features)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from math import inf, nextafter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import InputEvent
from streams.features import (
    EVENTS,
    FEATURES,
    KINDS_CHANGING,
    SOURCES,
    compute,
    next_change,
)
from streams.state import (
    DAY,
    CustomerState,
    StateConfig,
    apply_event,
    day_of,
    month_of,
    month_start,
)
from tests.factories import (
    CID,
    T0,
    account,
    complaint,
    csat,
    departed,
    event_strategy,
    fold,
    login,
    order,
    paid,
    times,
)


def one(state: CustomerState, at: float, name: str) -> Any:
    return compute(state, at, frozenset({name}))[name]


# -- catalogue ---------------------------------------------------------------------------------
def test_compute_all_features_when_names_is_none() -> None:
    state = fold([account(T0), login(T0)])
    values = compute(state, T0.timestamp())
    assert set(values) == set(FEATURES)
    assert values["name"] == "Acme"
    assert values["csm"] == "csm-3"
    assert values["tier"] == "normal"
    assert values["last_nps"] == -1
    assert values["last_csat"] == 0


def test_compute_only_named_features() -> None:
    state = fold([login(T0)])
    assert compute(state, T0.timestamp(), frozenset({"logins_7d", "name"})) == {
        "logins_7d": 1,
        "name": CID,
    }


def test_feature_values_have_declared_types_with_data() -> None:
    state = fold(
        [
            account(T0),
            login(T0),
            paid(T0, "o-1", "12.5"),
            complaint(T0, "t-1"),
            departed(T0, "c-1", "Ada"),
        ]
    )
    for name, value in compute(state, T0.timestamp() + DAY).items():
        assert isinstance(value, FEATURES[name].type), (name, value)


def test_feature_values_have_declared_types_without_data() -> None:
    state = fold([account(T0)])
    for name, value in compute(state, T0.timestamp() + DAY).items():
        assert isinstance(value, FEATURES[name].type), (name, value)


# -- days since -------------------------------------------------------------------------------
def test_days_since_last_login_uses_first_seen_when_never_logged_in() -> None:
    state = fold([account(T0)])
    t = T0.timestamp()
    assert one(state, t, "days_since_last_login") == 0
    assert one(state, t + 5 * DAY - 1, "days_since_last_login") == 4
    assert one(state, t + 5 * DAY, "days_since_last_login") == 5
    apply_event(state, login(T0 + timedelta(days=3)), StateConfig())
    assert one(state, t + 5 * DAY, "days_since_last_login") == 2
    assert one(state, t + 3 * DAY + 14 * DAY, "days_since_last_login") == 14


def test_days_since_last_login_never_negative_before_reference() -> None:
    state = fold([login(T0)])
    assert one(state, T0.timestamp() - 3 * DAY, "days_since_last_login") == 0


def test_days_since_on_empty_state_is_zero() -> None:
    state = CustomerState(CID)
    assert one(state, T0.timestamp(), "days_since_last_login") == 0
    assert one(state, T0.timestamp(), "tenure_days") == 0


# -- complaints -----------------------------------------------------------------------------
def test_complaints_90d_weekly_baseline_math() -> None:
    at = T0.timestamp()
    today = day_of(at)
    state = CustomerState(CID)
    state.complaints = {
        today - 97: 50,  # before the 90-day baseline window
        today - 96: 1,  # first day of the baseline window
        today - 50: 2,
        today - 7: 6,  # last day of the baseline window
        today - 6: 100,  # inside the last 7 days: not baseline
        today: 1000,
    }
    values = compute(state, at, frozenset({"complaints_90d_weekly_baseline", "complaints_7d"}))
    assert values["complaints_90d_weekly_baseline"] == pytest.approx(9 * 7 / 90)
    assert values["complaints_7d"] == 1100


def test_complaint_counts_from_events() -> None:
    events: list[InputEvent] = [
        complaint(T0 - timedelta(days=30 + i), f"old-{i}") for i in range(9)
    ]
    events += [complaint(T0 - timedelta(hours=i), f"new-{i}") for i in range(3)]
    state = fold(events)
    values = compute(state, T0.timestamp(), frozenset({"complaints_7d", "tickets_30d"}))
    assert values == {"complaints_7d": 3, "tickets_30d": 3}
    assert one(state, T0.timestamp(), "complaints_90d_weekly_baseline") == pytest.approx(0.7)


# -- key contacts --------------------------------------------------------------------------------
def test_key_contacts_departed_30d_window_edges() -> None:
    left = T0.timestamp()
    state = fold([departed(T0, "c-1", "Ada")])
    assert one(state, left - 1, "key_contacts_departed_30d") == 0
    assert one(state, left, "key_contacts_departed_30d") == 1
    assert one(state, left + 30 * DAY - 1, "key_contacts_departed_30d") == 1
    assert one(state, left + 30 * DAY, "key_contacts_departed_30d") == 0
    assert one(state, left + 30 * DAY, "last_departed_contact") == "Ada"
    gone = left + 90 * DAY  # kept 90 days, like the state keeps departures
    assert one(state, gone, "last_departed_contact") == "Ada"
    assert one(state, nextafter(gone, inf), "last_departed_contact") == ""
    assert next_change(state, left, frozenset({"last_departed_contact"})) == nextafter(gone, inf)


def test_key_contacts_departed_30d_counts_each_departure() -> None:
    state = fold(
        [
            departed(T0, "c-1", "Ada"),
            departed(T0 + timedelta(days=10), "c-2", "Bo"),
            departed(T0 - timedelta(days=31), "c-0", "Cy"),
        ]
    )
    at = (T0 + timedelta(days=10)).timestamp()
    assert one(state, at, "key_contacts_departed_30d") == 2
    assert one(state, at, "last_departed_contact") == "Bo"
    assert one(state, at, "key_contacts") == 0


def test_last_departed_contact_empty_when_none() -> None:
    assert one(CustomerState(CID), T0.timestamp(), "last_departed_contact") == ""


# -- orders ----------------------------------------------------------------------------------
def test_revenue_365d_covers_13_calendar_months() -> None:
    config = StateConfig(currency_rates={"EUR": 1.0, "USD": 0.5})
    state = fold(
        [
            paid(datetime(2023, 5, 31, 23, tzinfo=UTC), "o-0", "1000"),  # month - 13: out
            paid(datetime(2023, 6, 1, tzinfo=UTC), "o-1", "100.10"),  # month - 12: in
            paid(datetime(2024, 1, 15, tzinfo=UTC), "o-2", "20", "USD"),
            paid(datetime(2024, 6, 15, tzinfo=UTC), "o-3", "0.333"),
            paid(datetime(2024, 6, 16, tzinfo=UTC), "o-4", "0.333"),
        ],
        config,
    )
    at = datetime(2024, 6, 30, 12, tzinfo=UTC).timestamp()
    values = compute(state, at, frozenset({"revenue_365d", "orders_365d"}))
    assert values["revenue_365d"] == round(100.10 + 10 + 0.666, 2)
    assert values["orders_365d"] == 4
    # one month later the June 2023 order leaves the window
    later = datetime(2024, 7, 1, tzinfo=UTC).timestamp()
    assert one(state, later, "revenue_365d") == round(10 + 0.666, 2)


def test_days_since_last_order_and_orders_90d() -> None:
    state = fold([account(T0), paid(T0 + timedelta(days=2), "o-1", "5")])
    at = (T0 + timedelta(days=12, hours=1)).timestamp()
    assert one(state, at, "days_since_last_order") == 10
    assert one(state, at, "orders_90d") == 1
    assert one(state, at + 90 * DAY, "orders_90d") == 0


# -- next_change ------------------------------------------------------------------------------
def test_next_change_days_since_last_login_whole_day_boundary() -> None:
    state = fold([login(T0)])
    last = T0.timestamp()
    names = frozenset({"days_since_last_login"})
    assert next_change(state, last, names) == last + DAY
    assert next_change(state, last + 2.5 * DAY, names) == last + 3 * DAY
    assert next_change(state, last + 3 * DAY, names) == last + 4 * DAY
    assert next_change(state, last + 3 * DAY - 1, names) == last + 3 * DAY


def test_next_change_days_since_last_login_uses_first_seen_when_never_logged_in() -> None:
    state = fold([account(T0)])
    first = T0.timestamp()
    names = frozenset({"days_since_last_login"})
    assert next_change(state, first + 0.25 * DAY, names) == first + DAY


def test_next_change_windowed_count_when_a_login_day_enters_or_leaves() -> None:
    state = fold([login(T0)])
    names = frozenset({"logins_7d"})
    day = day_of(T0.timestamp())
    # the login day leaves the 7-day window 7 midnights later; nothing changes before
    assert next_change(state, T0.timestamp(), names) == (day + 7) * DAY
    assert next_change(state, (day + 6) * DAY, names) == (day + 7) * DAY
    assert next_change(state, (day + 7) * DAY, names) is None
    # evaluated before the login's day, it changes when that day begins
    assert next_change(state, day * DAY - 1, names) == day * DAY


def test_next_change_skips_a_midnight_where_one_day_enters_and_an_equal_one_leaves() -> None:
    state = fold([login(T0), login(T0 + timedelta(days=7))])
    day = day_of(T0.timestamp())
    names = frozenset({"logins_7d"})
    assert one(state, (day + 6) * DAY, "logins_7d") == one(state, (day + 7) * DAY, "logins_7d")
    assert next_change(state, (day + 6) * DAY, names) == (day + 14) * DAY


def test_next_change_of_the_previous_28_days_average() -> None:
    state = fold([login(T0)])
    day = day_of(T0.timestamp())
    names = frozenset({"logins_prev_28d_weekly_avg"})
    assert next_change(state, T0.timestamp(), names) == (day + 7) * DAY
    assert next_change(state, (day + 7) * DAY, names) == (day + 35) * DAY


def test_next_change_takes_the_earliest_candidate() -> None:
    state = fold([login(T0), complaint(T0 - timedelta(days=6, hours=1), "t-1")])
    names = frozenset({"days_since_last_login", "complaints_7d"})
    at = T0.timestamp() + 3600
    # the complaint's day leaves the 7-day window at the next midnight, before the day counter
    assert next_change(state, at, names) == datetime(2024, 3, 2, tzinfo=UTC).timestamp()
    late = datetime(2024, 3, 2, 8, tzinfo=UTC).timestamp()
    assert next_change(state, late, names) == T0.timestamp() + DAY


def test_next_change_of_monthly_windows_is_the_month_a_non_zero_month_leaves() -> None:
    state = fold([paid(datetime(2024, 3, 5, tzinfo=UTC), "o-1", "10")])
    at = datetime(2024, 6, 1, tzinfo=UTC).timestamp()
    out = datetime(2025, 4, 1, tzinfo=UTC).timestamp()
    for name in ("orders_365d", "revenue_365d"):
        assert next_change(state, at, frozenset({name})) == out
        assert next_change(state, out, frozenset({name})) is None


def test_next_change_of_revenue_ignores_a_change_below_a_cent() -> None:
    at = datetime(2024, 6, 10, tzinfo=UTC).timestamp()
    month = month_of(at)
    state = CustomerState(CID)
    state.monthly_value = {month - 12: 0.001, month - 5: 10.0}
    assert one(state, at, "revenue_365d") == 10.0
    assert one(state, month_start(month + 1), "revenue_365d") == 10.0
    assert next_change(state, at, frozenset({"revenue_365d"})) == month_start(month + 8)


def test_next_change_of_revenue_rising_skips_window_changes_that_keep_the_comparison() -> None:
    # found by the property below: at June the prior window still holds March and leaves in
    # September, but "0 > 0" is as false as "0 > 0.01" was
    state = fold([paid(datetime(2024, 3, 1, 9, 30, tzinfo=UTC), "o-1", "0.01")])
    names = frozenset({"revenue_rising"})
    march = datetime(2024, 3, 2, tzinfo=UTC).timestamp()
    june = datetime(2024, 6, 1, tzinfo=UTC).timestamp()
    assert one(state, march, "revenue_rising") is True
    assert next_change(state, march, names) == june
    assert one(state, june, "revenue_rising") is False
    assert next_change(state, june, names) is None


def test_next_change_of_key_contacts_departed_is_when_the_oldest_ages_out() -> None:
    state = fold([departed(T0, "c-1", "Ada"), departed(T0 + timedelta(days=3), "c-2", "Bo")])
    names = frozenset({"key_contacts_departed_30d"})
    t = T0.timestamp()
    assert next_change(state, t - 5, names) == t
    assert next_change(state, t, names) == t + 3 * DAY
    assert next_change(state, t + 3 * DAY, names) == t + 30 * DAY
    assert next_change(state, t + 30 * DAY, names) == t + 33 * DAY
    assert next_change(state, t + 33 * DAY, names) is None


def test_next_change_none_without_time_inputs_or_data() -> None:
    state = fold([account(T0)])
    at = T0.timestamp()
    assert next_change(state, at, frozenset({"open_tickets", "name"})) is None
    assert next_change(state, at, frozenset()) is None
    # windowed feature but no windowed data yet
    assert next_change(state, at, frozenset({"complaints_7d"})) is None
    assert next_change(CustomerState(CID), at, frozenset({"days_since_last_login"})) is None


# -- login_weeks_declining ---------------------------------------------------------------------
def weekly(counts_newest_first: list[int], at: float) -> CustomerState:
    """A state whose logins per 7-day window back from ``at`` are the given counts."""
    state = CustomerState(CID)
    today = day_of(at)
    for k, n in enumerate(counts_newest_first):
        if n:
            state.logins[today - 7 * k - (k % 7)] = n  # anywhere inside week k
    return state


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([1, 3, 5, 5], 2),
        ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 8),  # at most 8 weeks
        ([0, 1, 2, 3, 4, 5, 6, 7, 8], 8),
        ([0, 1, 2, 3, 4, 5, 6, 7, 7], 7),
        ([2, 2, 5], 0),  # equal is not a fall
        ([3, 1, 5], 0),
        ([0, 4], 1),  # a week without logins fell from 4
        ([], 0),
    ],
)
def test_login_weeks_declining(counts: list[int], expected: int) -> None:
    at = T0.timestamp()
    assert one(weekly(counts, at), at, "login_weeks_declining") == expected


def test_login_weeks_declining_week_edges_and_today() -> None:
    at = T0.timestamp()
    today = day_of(at)
    state = CustomerState(CID)
    state.logins = {today: 1, today - 6: 1, today - 7: 3, today - 13: 1, today - 14: 5}
    # weeks: days 0..6 → 2, days 7..13 → 4, days 14..20 → 5, then 0
    assert one(state, at, "login_weeks_declining") == 2
    state.logins[today + 1] = 9  # a future day does not count yet
    assert one(state, at, "login_weeks_declining") == 2


def test_login_weeks_declining_from_events_and_its_next_change() -> None:
    state = fold([login(T0)])
    day = day_of(T0.timestamp())
    names = frozenset({"login_weeks_declining"})
    assert one(state, T0.timestamp(), "login_weeks_declining") == 0
    assert next_change(state, T0.timestamp(), names) == (day + 7) * DAY
    assert one(state, (day + 7) * DAY, "login_weeks_declining") == 1  # 0 this week, 1 before
    assert next_change(state, (day + 7) * DAY, names) == (day + 14) * DAY
    assert one(state, (day + 14) * DAY, "login_weeks_declining") == 0
    assert next_change(state, (day + 14) * DAY, names) is None


# -- orders -------------------------------------------------------------------------------------
def test_order_count_and_median_gap() -> None:
    state = fold([order(T0 + timedelta(days=d), f"o-{d}", "placed") for d in (0, 10, 13, 30)])
    at = (T0 + timedelta(days=40)).timestamp()
    assert one(state, at, "order_count") == 4
    assert one(state, at, "order_gap_median_days") == 10.0  # gaps 10, 3, 17
    apply_event(state, order(T0 + timedelta(days=31), "o-31", "paid"), StateConfig())
    assert one(state, at, "order_gap_median_days") == 6.5  # gaps 10, 3, 17, 1
    apply_event(state, order(T0 + timedelta(days=41), "o-10", "cancelled"), StateConfig())
    assert one(state, at, "order_count") == 4
    assert one(state, at, "order_gap_median_days") == 13.0  # gaps 13, 17, 1


def test_order_gap_median_is_fractional_and_zero_below_two_orders() -> None:
    state = fold([paid(T0, "o-1")])
    at = (T0 + timedelta(days=3)).timestamp()
    assert (one(state, at, "order_count"), one(state, at, "order_gap_median_days")) == (1, 0.0)
    apply_event(state, paid(T0 + timedelta(days=1, hours=12), "o-2"), StateConfig())
    assert one(state, at, "order_gap_median_days") == 1.5
    assert one(CustomerState(CID), at, "order_gap_median_days") == 0.0


# -- CSAT ---------------------------------------------------------------------------------------
def test_csat_average_of_the_last_three() -> None:
    at = T0.timestamp() + DAY
    state = CustomerState(CID)
    assert (one(state, at, "csat_avg_last3"), one(state, at, "csat_count")) == (0.0, 0)
    apply_event(state, csat(T0, 2), StateConfig())
    assert (one(state, at, "csat_avg_last3"), one(state, at, "csat_count")) == (2.0, 1)
    for h, score in enumerate([5, 4, 3, 1]):
        apply_event(state, csat(T0 + timedelta(hours=h + 1), score), StateConfig())
    assert one(state, at, "csat_avg_last3") == pytest.approx(8 / 3)  # 4, 3, 1
    assert one(state, at, "csat_count") == 3


# -- renewal ------------------------------------------------------------------------------------
def test_days_to_renewal_counts_whole_days_down_and_below_zero() -> None:
    renewal = T0 + timedelta(days=10)
    state = fold([account(T0, renewal_at=renewal)])
    r = renewal.timestamp()
    assert one(state, T0.timestamp(), "has_renewal_date") is True
    assert one(state, T0.timestamp(), "days_to_renewal") == 10
    assert one(state, T0.timestamp() + 3600, "days_to_renewal") == 9
    assert one(state, r - DAY, "days_to_renewal") == 1
    assert one(state, r - 1, "days_to_renewal") == 0
    assert one(state, r, "days_to_renewal") == 0
    assert one(state, r + 1, "days_to_renewal") == -1
    assert one(state, r + DAY, "days_to_renewal") == -1
    assert one(state, r + DAY + 1, "days_to_renewal") == -2


def test_days_to_renewal_without_a_date() -> None:
    state = fold([account(T0)])
    at = T0.timestamp()
    assert (one(state, at, "days_to_renewal"), one(state, at, "has_renewal_date")) == (0, False)
    assert next_change(state, at, frozenset({"days_to_renewal"})) is None
    reaches = FEATURES["days_to_renewal"].reaches
    assert reaches is not None and reaches(state, at, -1) is None


def test_days_to_renewal_next_change_and_reaches() -> None:
    renewal = T0 + timedelta(days=10)
    state = fold([account(T0, renewal_at=renewal)])
    r = renewal.timestamp()
    feature = FEATURES["days_to_renewal"]
    assert feature.next_change is not None and feature.reaches is not None
    at = T0.timestamp() + 3600  # 9 days: until 9 days before renewal, then 8
    assert feature.next_change(state, at) == nextafter(r - 9 * DAY, inf)
    assert feature.reaches(state, at, 0) == nextafter(r - DAY, inf)
    assert feature.reaches(state, at, -1) == nextafter(r, inf)
    assert feature.reaches(state, at, 9) is None  # it is 9 already
    assert feature.reaches(state, at, 10) is None  # passed


def test_days_since_reaches() -> None:
    state = fold([account(T0 - timedelta(days=2)), login(T0)])
    t = T0.timestamp()
    login_reaches = FEATURES["days_since_last_login"].reaches
    tenure_reaches = FEATURES["tenure_days"].reaches
    order_reaches = FEATURES["days_since_last_order"].reaches
    assert login_reaches is not None and tenure_reaches is not None and order_reaches is not None
    assert login_reaches(state, t, 14) == t + 14 * DAY
    assert login_reaches(state, t + 20 * DAY, 14) is None
    assert login_reaches(state, t, 0) is None
    assert login_reaches(state, t, -1) is None
    assert tenure_reaches(state, t, 3) == t + DAY
    assert order_reaches(state, t, 90) == t + 88 * DAY  # never ordered: since first seen
    assert login_reaches(CustomerState(CID), t, 14) is None


# -- alerts -------------------------------------------------------------------------------------
def test_open_high_alerts_counts_firing_high_and_critical() -> None:
    state = CustomerState(CID)
    state.alerts = {
        "a": {"s": "firing", "sev": "high"},
        "b": {"s": "firing", "sev": "critical"},
        "c": {"s": "firing", "sev": "medium"},
        "d": {"s": "pending", "sev": "critical"},
        "e": {"s": "idle", "sev": "high"},
        "f": {"s": "firing"},  # written before severities were recorded
    }
    assert one(state, T0.timestamp(), "open_high_alerts") == 2


# -- what changes a feature ---------------------------------------------------------------------
COUNTERS = (
    "days_since_last_login",
    "days_since_last_order",
    "tenure_days",
    "days_to_renewal",
    "rfm_age_days",
    "days_since_tier_change",
)


def test_catalogue_declares_sources_and_time_functions() -> None:
    for f in FEATURES.values():
        assert f.depends_on <= SOURCES, f.name
        assert (f.next_change is not None) == f.changes_with_time, f.name
    assert {f.name for f in FEATURES.values() if f.reaches is not None} == set(COUNTERS)


def test_kinds_changing() -> None:
    assert set(KINDS_CHANGING) == SOURCES
    assert {"login", "order", "ticket", "contact", "account", "task_update"} == EVENTS
    since_first_seen = {
        "days_since_last_login",
        "days_since_last_order",
        "tenure_days",
    }
    assert KINDS_CHANGING["task_update"] == since_first_seen
    assert KINDS_CHANGING["alerts"] == {"open_high_alerts"}
    assert KINDS_CHANGING["login"] == since_first_seen | {
        "logins_7d",
        "logins_prev_28d_weekly_avg",
        "login_weeks_declining",
        "login_activity_ratio",
    }
    assert "tier" in KINDS_CHANGING["scores"] and "health_score" in KINDS_CHANGING["scores"]
    assert {"days_to_renewal", "has_renewal_date", "name"} <= KINDS_CHANGING["account"]
    assert {"order_count", "order_gap_median_days", "revenue_365d"} <= KINDS_CHANGING["order"]
    assert {"csat_avg_last3", "csat_count", "open_tickets"} <= KINDS_CHANGING["ticket"]
    assert all("customer_id" not in names for names in KINDS_CHANGING.values())
    for name, f in FEATURES.items():
        assert {k for k, names in KINDS_CHANGING.items() if name in names} == f.depends_on


PROPERTY_CONFIG = StateConfig(currency_rates={"EUR": 1.0, "USD": 0.92})
EVENT_LISTS = st.lists(event_strategy(), max_size=40)


@settings(max_examples=300, deadline=None)
@given(events=EVENT_LISTS, new=event_strategy(), later=st.floats(0, 50 * DAY))
def test_an_event_changes_only_the_features_of_its_kind(
    events: list[InputEvent], new: InputEvent, later: float
) -> None:
    before = fold(events, PROPERTY_CONFIG)
    after = CustomerState.from_bytes(before.to_bytes())
    apply_event(after, new, PROPERTY_CONFIG)
    assert after.last_event_at is not None
    at = after.last_event_at + later  # the engine never evaluates before an applied event
    old, now = compute(before, at), compute(after, at)
    changed = {n for n in FEATURES if old[n] != now[n]}
    assert changed <= KINDS_CHANGING[new.event_kind]


# -- properties of next_change and reaches ------------------------------------------------------
TIMED = tuple(f for f in FEATURES.values() if f.changes_with_time)
HORIZON = 450 * DAY


def _around(t: float) -> list[float]:
    down, up = nextafter(t, -inf), nextafter(t, inf)
    return [nextafter(down, -inf), down, t, up, nextafter(up, inf)]


def change_points(name: str, state: CustomerState, at: float, end: float) -> list[float]:
    """Every moment in (at, end) where the feature could change, from its definition."""
    points: list[float] = []
    refs = {
        "days_since_last_login": state.last_login_at,
        "days_since_last_order": state.last_order_at,
        "tenure_days": state.first_seen_at,
        "order_overdue_ratio": state.last_order_at,
    }
    if name in refs:
        ref = refs[name] if refs[name] is not None else state.first_seen_at
        if ref:
            for k in range(int((at - ref) // DAY) - 1, int((end - ref) // DAY) + 2):
                points += _around(ref + k * DAY)
    elif name == "days_to_renewal":
        r = state.renewal_at
        if r is not None:
            for k in range(int((r - end) // DAY) - 1, int((r - at) // DAY) + 2):
                points += _around(r - k * DAY)
    elif name == "key_contacts_departed_30d":
        for ts, _, _ in state.departures:
            points += _around(ts) + _around(ts + 30 * DAY)
    elif name in ("orders_365d", "revenue_365d", "revenue_rising"):
        for month in range(month_of(at), month_of(min(end, at + HORIZON)) + 2):
            points += [month_start(month), nextafter(month_start(month), -inf)]
    else:  # a function of the UTC day
        for day in range(day_of(at), day_of(min(end, at + HORIZON)) + 2):
            points += [day * DAY, nextafter(day * DAY, -inf)]
    return [t for t in points if at < t < end]


@st.composite
def eval_times(draw: st.DrawFn, state: CustomerState) -> float:
    """A random time, or one on a boundary that matters to this state."""
    base = draw(times(420)).timestamp() - 20 * DAY
    kind = draw(st.sampled_from(["any", "midnight", "boundary"]))
    if kind == "midnight":
        return day_of(base) * DAY
    marks = [
        t
        for t in (state.first_seen_at, state.last_login_at, state.last_order_at, state.renewal_at)
        if t is not None
    ] + [d[0] for d in state.departures]
    if kind == "any" or not marks:
        return base
    mark = draw(st.sampled_from(marks)) + draw(st.integers(-40, 40)) * DAY
    return draw(st.sampled_from(_around(mark)))


def check_next_change(state: CustomerState, at: float, fractions: list[float]) -> None:
    for f in TIMED:
        assert f.next_change is not None
        now = f.compute(state, at)
        found = f.next_change(state, at)
        assert found is None or found > at, f.name
        end = min(found if found is not None else inf, at + HORIZON)
        samples = change_points(f.name, state, at, end)
        samples += [at + x * (end - at) for x in fractions] + [nextafter(end, -inf)]
        for t in samples:
            if at < t < end:
                assert f.compute(state, t) == now, (f.name, at, t, found)
        if found is not None:  # exact, not just early
            assert f.compute(state, found) != now, (f.name, at, found)


FRACTIONS = st.lists(st.floats(0, 1, exclude_min=True, exclude_max=True), max_size=5)


@settings(max_examples=200, deadline=None)
@given(events=EVENT_LISTS, data=st.data())
def test_a_derived_feature_equals_its_own_computation(events: list[InputEvent], data: Any) -> None:
    state = fold(events, PROPERTY_CONFIG)
    at = data.draw(eval_times(state))
    derived = [f for f in FEATURES.values() if f.derive is not None]
    assert derived
    for f in derived:
        assert f.derive is not None
        names, derive = f.derive
        assert derive(*(FEATURES[n].compute(state, at) for n in names)) == f.compute(state, at)


@settings(max_examples=300, deadline=None)
@given(events=EVENT_LISTS, fractions=FRACTIONS, data=st.data())
def test_time_features_change_exactly_at_next_change(
    events: list[InputEvent], fractions: list[float], data: Any
) -> None:
    state = fold(events, PROPERTY_CONFIG)
    check_next_change(state, data.draw(eval_times(state)), fractions)


@settings(max_examples=200, deadline=None)
@given(
    logins=st.dictionaries(st.integers(-70, 10), st.integers(0, 6), max_size=60),
    offset=st.integers(-10 * 86400, 90 * 86400),
    fractions=FRACTIONS,
)
def test_login_windows_change_exactly_at_next_change(
    logins: dict[int, int], offset: int, fractions: list[float]
) -> None:
    state = CustomerState(CID)
    base = day_of(T0.timestamp())
    state.logins = {base + d: float(n) for d, n in logins.items()}
    check_next_change(state, T0.timestamp() + offset, fractions)


@settings(max_examples=300, deadline=None)
@given(events=EVENT_LISTS, data=st.data())
def test_reaches_is_the_moment_a_day_counter_becomes_the_value(
    events: list[InputEvent], data: Any
) -> None:
    state = fold(events, PROPERTY_CONFIG)
    at = data.draw(eval_times(state))
    for name in COUNTERS:
        f = FEATURES[name]
        assert f.reaches is not None and f.next_change is not None
        now = f.compute(state, at)
        step = -1 if name == "days_to_renewal" else 1
        moves = f.next_change(state, at) is not None
        for value in range(now - 45, now + 45):
            t = f.reaches(state, at, value)
            if not moves or (value - now) * step <= 0:
                assert t is None, (name, at, value)
                continue
            assert t is not None and t > at, (name, at, value)
            assert f.compute(state, t) == value, (name, at, value, t)
            before = nextafter(t, -inf)
            assert before <= at or f.compute(state, before) == value - step, (name, at, value)
            if value == now + step:
                assert t == f.next_change(state, at)


@settings(max_examples=100, deadline=None)
@given(events=EVENT_LISTS, names=st.sets(st.sampled_from(sorted(FEATURES))), data=st.data())
def test_next_change_is_the_earliest_of_the_named_features(
    events: list[InputEvent], names: set[str], data: Any
) -> None:
    state = fold(events, PROPERTY_CONFIG)
    at = data.draw(eval_times(state))
    finders = [f for f in (FEATURES[n].next_change for n in names) if f is not None]
    each = [find(state, at) for find in finders]
    assert next_change(state, at, frozenset(names)) == min(
        (t for t in each if t is not None), default=None
    )


BINADE = datetime.fromtimestamp(2.0**31, UTC)  # 2038-01-19: float spacing doubles here


@settings(max_examples=300, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(["login", "order", "account"]), min_size=1, max_size=4),
    offsets=st.lists(st.integers(-3 * 86400 * 10**6, 3 * 86400 * 10**6), min_size=5, max_size=5),
    data=st.data(),
)
def test_day_counters_are_exact_where_float_spacing_changes(
    kinds: list[str], offsets: list[int], data: Any
) -> None:
    def near(i: int) -> datetime:
        return BINADE + timedelta(microseconds=offsets[i])

    events: list[InputEvent] = []
    for i, kind in enumerate(kinds):
        if kind == "login":
            events.append(login(near(i)))
        elif kind == "order":
            events.append(paid(near(i), f"o-{i}"))
        else:
            events.append(account(near(i), renewal_at=near(4)))
    state = fold(events)
    base = near(4).timestamp() + data.draw(st.integers(-4, 4)) * DAY
    at = data.draw(st.sampled_from(_around(base)))
    check_next_change(state, at, [])
    for name in COUNTERS:
        f = FEATURES[name]
        assert f.reaches is not None
        now = f.compute(state, at)
        for value in range(now - 6, now + 6):
            t = f.reaches(state, at, value)
            if t is not None:
                assert f.compute(state, t) == value, (name, at, value)
                assert f.compute(state, nextafter(t, -inf)) != value, (name, at, value)


@settings(max_examples=200, deadline=None)
@given(events=EVENT_LISTS, data=st.data())
def test_a_daily_feature_holds_its_value_through_the_utc_day(
    events: list[InputEvent], data: Any
) -> None:
    state = fold(events, PROPERTY_CONFIG)
    at = data.draw(eval_times(state))
    midnight = (day_of(at) + 1) * DAY
    later = data.draw(st.floats(at, nextafter(midnight, -inf)))
    daily = [f for f in FEATURES.values() if f.daily]
    assert daily
    for f in daily:
        assert f.next_change is not None
        assert f.compute(state, later) == f.compute(state, at), (f.name, at, later)
        found = f.next_change(state, at)
        assert found is None or (found >= midnight and found % DAY == 0), (f.name, at, found)
