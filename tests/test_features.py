"""Unit tests for the feature catalogue (streams.features)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from schemas import AccountEvent, ContactEvent, InputEvent, LoginEvent, OrderEvent, TicketEvent
from streams.features import FEATURES, compute, next_change
from streams.state import DAY, CustomerState, StateConfig, apply_event, day_of

CID = "cust-1"
T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
_seq = itertools.count()


def _common(when: datetime) -> dict[str, Any]:
    return {"event_id": f"e-{next(_seq)}", "customer_id": CID, "occurred_at": when}


def login(when: datetime) -> LoginEvent:
    return LoginEvent(**_common(when), user_id="u-1", channel="web")


def account(when: datetime) -> AccountEvent:
    return AccountEvent(**_common(when), name="Acme", owner="am-7", csm="csm-3")


def paid(when: datetime, order_id: str, amount: str, currency: str = "EUR") -> OrderEvent:
    return OrderEvent(
        **_common(when), order_id=order_id, amount=Decimal(amount), currency=currency, status="paid"
    )


def departed(when: datetime, contact_id: str, name: str) -> ContactEvent:
    return ContactEvent(
        **_common(when), contact_id=contact_id, name=name, is_key_contact=True, change="departed"
    )


def complaint(when: datetime, ticket_id: str) -> TicketEvent:
    return TicketEvent(
        **_common(when), ticket_id=ticket_id, kind="complaint", severity="high", status="opened"
    )


def fold(events: list[InputEvent], config: StateConfig | None = None) -> CustomerState:
    state = CustomerState(CID)
    for event in events:
        apply_event(state, event, config or StateConfig())
    return state


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


def test_next_change_windowed_features_at_next_utc_midnight() -> None:
    state = fold([login(T0)])
    names = frozenset({"logins_7d"})
    at = T0.timestamp()
    midnight = datetime(2024, 3, 2, tzinfo=UTC).timestamp()
    assert next_change(state, at, names) == midnight
    assert next_change(state, midnight, names) == midnight + DAY  # strictly after
    assert next_change(state, midnight - 1, names) == midnight


def test_next_change_takes_the_earliest_candidate() -> None:
    state = fold([login(T0)])  # 09:30 UTC
    names = frozenset({"days_since_last_login", "complaints_7d"})
    at = T0.timestamp() + 3600
    assert next_change(state, at, names) == datetime(2024, 3, 2, tzinfo=UTC).timestamp()
    late = datetime(2024, 3, 2, 20, tzinfo=UTC).timestamp()
    assert next_change(state, late, names) == datetime(2024, 3, 3, tzinfo=UTC).timestamp()
    before_login_mark = datetime(2024, 3, 2, 9, tzinfo=UTC).timestamp()
    assert next_change(state, before_login_mark, names) == T0.timestamp() + DAY


def test_next_change_none_without_time_inputs_or_data() -> None:
    state = fold([account(T0)])
    at = T0.timestamp()
    assert next_change(state, at, frozenset({"open_tickets", "name"})) is None
    assert next_change(state, at, frozenset()) is None
    # windowed feature but no windowed data yet
    assert next_change(state, at, frozenset({"complaints_7d"})) is None
    assert next_change(CustomerState(CID), at, frozenset({"days_since_last_login"})) is None
