"""Unit and property tests for per-customer rolling state (streams.state)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import InputEvent
from streams.features import compute
from streams.state import (
    DAY,
    STATE_VERSION,
    CustomerState,
    StateConfig,
    apply_event,
    day_of,
    month_of,
    month_start,
    prune,
)
from tests.factories import (
    CID,
    CONFIG,
    T0,
    account,
    contact,
    csat,
    event_strategy,
    fold,
    login,
    order,
    ticket,
)

BUCKETS = (
    "logins",
    "complaints",
    "tickets",
    "orders",
    "order_value",
    "monthly_orders",
    "monthly_value",
)


def nonempty_buckets(state: CustomerState) -> set[str]:
    return {name for name in BUCKETS if any(getattr(state, name).values())}


# -- each kind updates the right buckets ------------------------------------------------
def test_login_updates_login_bucket_and_times() -> None:
    state = fold([login(T0)])
    ts = T0.timestamp()
    assert state.logins == {day_of(ts): 1}
    assert state.last_login_at == ts
    assert state.first_seen_at == ts
    assert state.last_event_at == ts
    assert nonempty_buckets(state) == {"logins"}


def test_paid_order_updates_order_buckets() -> None:
    state = fold([order(T0, "o-1", "paid", "250.50")])
    ts = T0.timestamp()
    assert state.orders == {day_of(ts): 1}
    assert state.order_value == {day_of(ts): 250.5}
    assert state.monthly_orders == {month_of(ts): 1}
    assert state.monthly_value == {month_of(ts): 250.5}
    assert state.last_order_at == ts
    assert state.last_login_at is None
    assert nonempty_buckets(state) == {"orders", "order_value", "monthly_orders", "monthly_value"}


def test_complaint_ticket_updates_ticket_and_complaint_buckets() -> None:
    state = fold([ticket(T0, "t-1", kind="complaint", severity="critical", csat=2, nps=4)])
    day = day_of(T0.timestamp())
    assert state.tickets == {day: 1}
    assert state.complaints == {day: 1}
    assert state.open_tickets == {"t-1": "critical"}
    assert (state.last_csat, state.last_nps) == (2, 4)
    assert nonempty_buckets(state) == {"tickets", "complaints"}


def test_key_contact_added_is_tracked_without_touching_buckets() -> None:
    state = fold([contact(T0, "c-9", "added", is_key=True, name="Ada")])
    assert state.key_contacts == {"c-9": "Ada"}
    assert state.departures == []
    assert nonempty_buckets(state) == set()


def test_account_event_replaces_master_data() -> None:
    renewal = datetime(2025, 1, 1, tzinfo=UTC)
    state = fold(
        [
            account(T0, segment="smb", region="EMEA"),
            account(T0 + timedelta(hours=1), owner="am-8", renewal_at=renewal),
        ]
    )
    assert state.account == {
        "name": "Acme",
        "owner": "am-8",
        "csm": "csm-3",
        "renewal_at": renewal.isoformat(),
    }
    assert state.account_at == (T0 + timedelta(hours=1)).timestamp()
    assert nonempty_buckets(state) == set()


def test_older_account_event_does_not_override_newer() -> None:
    state = fold([account(T0 + timedelta(hours=1), owner="new"), account(T0, owner="old")])
    assert state.account["owner"] == "new"
    assert state.first_seen_at == T0.timestamp()


# -- idempotency ----------------------------------------------------------------------------
def test_duplicate_event_id_is_a_noop() -> None:
    state = CustomerState(CID)
    assert apply_event(state, login(T0, event_id="dup"), CONFIG) is True
    before = state.to_bytes()
    assert apply_event(state, login(T0, event_id="dup"), CONFIG) is False
    # a different payload under a seen id is still a duplicate
    later = order(T0 + timedelta(days=2), "o-1", "paid", event_id="dup")
    assert apply_event(state, later, CONFIG) is False
    assert state.to_bytes() == before


def test_recent_event_ids_bound_evicts_oldest() -> None:
    config = StateConfig(recent_event_ids=16)
    state = CustomerState(CID)
    for i in range(17):
        apply_event(state, login(T0 + timedelta(minutes=i), event_id=f"id-{i}"), config)
    assert len(state.recent_ids) == 16
    assert list(state.recent_ids) == [f"id-{i}" for i in range(1, 17)]
    assert not state.seen("id-0")
    assert all(state.seen(f"id-{i}") for i in range(1, 17))
    # the evicted id is no longer deduplicated; the retained ones are
    assert apply_event(state, login(T0, event_id="id-1"), config) is False
    assert apply_event(state, login(T0, event_id="id-0"), config) is True
    assert not state.seen("id-1")  # id-0 pushed out the oldest retained id


# -- serialisation --------------------------------------------------------------------------
def rich_state() -> CustomerState:
    t = T0
    state = fold(
        [
            account(t, renewal_at=datetime(2025, 1, 1, tzinfo=UTC)),
            login(t + timedelta(hours=1)),
            order(t + timedelta(days=1), "o-1", "placed", "10", "USD"),
            order(t + timedelta(days=2), "o-1", "paid", "10", "USD"),
            ticket(t + timedelta(days=3), "t-1", csat=3, nps=7),
            ticket(t + timedelta(days=3, hours=1), "t-2", kind="question", severity="low"),
            contact(t + timedelta(days=4), "c-1", "added", is_key=True, name="Bo"),
            contact(t + timedelta(days=5), "c-1", "departed", is_key=False),
        ],
        StateConfig(currency_rates={"EUR": 1.0, "USD": 0.92}),
    )
    state.evaluated_at = (t + timedelta(days=5)).timestamp()
    state.alerts["r"] = {"s": "firing", "since": 1.5, "id": "al-x", "sum": "s", "task": "tk-y"}
    state.last_fired["r"] = 1.5
    return state


def test_to_bytes_from_bytes_round_trip() -> None:
    state = rich_state()
    raw = state.to_bytes()
    back = CustomerState.from_bytes(raw)
    assert back == state
    assert back.to_bytes() == raw
    assert back.recent_set == set(state.recent_ids)
    assert back.departures and isinstance(back.departures[0], tuple)
    assert all(isinstance(k, int) for k in back.logins)


@pytest.mark.parametrize("version", [STATE_VERSION + 1, 0, None, "1"])
def test_unknown_state_version_rejected(version: Any) -> None:
    doc = orjson.loads(rich_state().to_bytes())
    doc["v"] = version
    with pytest.raises(ValueError, match="version"):
        CustomerState.from_bytes(orjson.dumps(doc))


def test_missing_state_version_rejected() -> None:
    doc = orjson.loads(rich_state().to_bytes())
    del doc["v"]
    with pytest.raises(ValueError, match="version"):
        CustomerState.from_bytes(orjson.dumps(doc))


@pytest.mark.parametrize("wrong", [None, "x", 1.5, [1], {"a": 1}], ids=repr)
def test_a_mistyped_field_decodes_or_raises_value_error(wrong: Any) -> None:
    """The runtime starts a customer afresh on ValueError; any other error would stop it."""
    fields = [k for k in orjson.loads(rich_state().to_bytes()) if k != "v"]
    raised = 0
    for name in fields:
        doc = orjson.loads(rich_state().to_bytes())
        doc[name] = wrong
        try:
            CustomerState.from_bytes(orjson.dumps(doc))
        except ValueError as exc:
            assert "unreadable customer state" in str(exc)
            raised += 1
    assert raised  # every wrong value breaks some field


@pytest.mark.parametrize("raw", [b"[1]", b"null", b"{", b'"state"'])
def test_a_value_that_is_no_state_raises_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        CustomerState.from_bytes(raw)


# -- orders -------------------------------------------------------------------------------
RATES = StateConfig(currency_rates={"EUR": 1.0, "USD": 0.5})


def test_order_placed_then_paid_counts_once_with_converted_value() -> None:
    state = fold([order(T0, "o-1", "placed", "100", "USD")], RATES)
    day, month = day_of(T0.timestamp()), month_of(T0.timestamp())
    assert state.orders == {day: 1}
    assert sum(state.order_value.values()) == 0
    apply_event(state, order(T0 + timedelta(hours=1), "o-1", "paid", "100", "USD"), RATES)
    assert state.orders == {day: 1}
    assert state.monthly_orders == {month: 1}
    assert state.order_value == {day: 50.0}
    assert state.monthly_value == {month: 50.0}
    # a repeated 'paid' (new event id) neither recounts nor adds value again
    apply_event(state, order(T0 + timedelta(hours=2), "o-1", "paid", "100", "USD"), RATES)
    assert state.orders == {day: 1}
    assert state.order_value == {day: 50.0}


def test_order_refunded_subtracts_value() -> None:
    state = fold(
        [
            order(T0, "o-1", "paid", "80", "USD"),
            order(T0 + timedelta(hours=3), "o-1", "refunded", "80", "USD"),
        ],
        RATES,
    )
    assert sum(state.order_value.values()) == 0
    assert sum(state.monthly_value.values()) == 0
    assert sum(state.orders.values()) == 1  # a refund is not a cancellation


def test_order_refunded_without_payment_subtracts_nothing() -> None:
    state = fold(
        [order(T0, "o-1", "placed"), order(T0 + timedelta(hours=1), "o-1", "refunded")], RATES
    )
    assert sum(state.order_value.values()) == 0
    assert sum(state.monthly_value.values()) == 0


def test_order_cancelled_decrements_count() -> None:
    state = fold(
        [
            order(T0, "o-1", "placed"),
            order(T0, "o-2", "placed"),
            order(T0 + timedelta(hours=1), "o-1", "cancelled"),
        ],
        RATES,
    )
    assert sum(state.orders.values()) == 1
    assert sum(state.monthly_orders.values()) == 1
    # cancelling twice does not decrement twice
    apply_event(state, order(T0 + timedelta(hours=2), "o-1", "cancelled"), RATES)
    assert sum(state.orders.values()) == 1


def test_cancelled_order_never_makes_order_count_negative() -> None:
    state = fold(
        [
            order(T0, "o-1", "placed"),
            order(T0 + timedelta(days=60), "o-1", "cancelled"),
        ]
    )
    at = (T0 + timedelta(days=100)).timestamp()
    assert compute(state, at, frozenset({"orders_90d"})) == {"orders_90d": 0}


# -- tickets ------------------------------------------------------------------------------
def test_tickets_open_resolve_and_complaint_kind() -> None:
    day = day_of(T0.timestamp())
    state = fold(
        [
            ticket(T0, "t-1", kind="question", severity="low"),
            ticket(T0, "t-2", kind="complaint", severity="critical"),
            ticket(T0, "t-3", kind="incident", severity="high"),
        ]
    )
    assert state.tickets == {day: 3}
    assert state.complaints == {day: 1}
    assert state.open_tickets == {"t-1": "low", "t-2": "critical", "t-3": "high"}
    # an update of an open ticket is not a new ticket
    apply_event(state, ticket(T0, "t-2", status="reopened", severity="high"), CONFIG)
    assert state.tickets == {day: 3}
    assert state.complaints == {day: 1}
    assert state.open_tickets["t-2"] == "high"
    apply_event(state, ticket(T0, "t-2", status="resolved"), CONFIG)
    apply_event(state, ticket(T0, "t-1", status="closed", kind="question"), CONFIG)
    assert state.open_tickets == {"t-3": "high"}
    assert state.tickets == {day: 3}  # history is kept
    assert state.complaints == {day: 1}


# -- contacts -----------------------------------------------------------------------------
def test_key_contact_departure_recorded() -> None:
    left = T0 + timedelta(days=3)
    state = fold(
        [
            contact(T0, "c-1", "added", is_key=True, name="Ada"),
            contact(left, "c-1", "departed", is_key=False, name=None),
        ]
    )
    assert state.key_contacts == {}
    assert state.departures == [(left.timestamp(), "c-1", "c-1")]


def test_key_contact_departure_keeps_label_from_event() -> None:
    state = fold(
        [
            contact(T0, "c-1", "added", is_key=True, name="Ada"),
            contact(T0 + timedelta(days=1), "c-1", "departed", is_key=True, name="Ada L."),
        ]
    )
    assert [d[2] for d in state.departures] == ["Ada L."]


def test_non_key_contact_departure_not_recorded() -> None:
    state = fold(
        [
            contact(T0, "c-2", "added", is_key=False, name="Bob"),
            contact(T0 + timedelta(days=1), "c-2", "departed", is_key=False, name="Bob"),
        ]
    )
    assert state.departures == []
    assert state.key_contacts == {}


def test_contact_demoted_from_key_then_departing_is_not_a_key_departure() -> None:
    state = fold(
        [
            contact(T0, "c-3", "added", is_key=True),
            contact(T0 + timedelta(hours=1), "c-3", "role_changed", is_key=False),
            contact(T0 + timedelta(days=1), "c-3", "departed", is_key=False),
        ]
    )
    assert state.departures == []


# -- pruning ------------------------------------------------------------------------------
def test_prune_drops_buckets_older_than_horizon() -> None:
    config = StateConfig(horizon_days=30)
    d0 = day_of(T0.timestamp())
    state = fold(
        [
            login(T0),
            ticket(T0, "t-1"),
            order(T0, "o-1", "paid"),
            login(T0 + timedelta(days=1)),
            login(T0 + timedelta(days=31)),
        ],
        config,
    )
    assert set(state.logins) == {d0 + 1, d0 + 31}  # day d0 is 31 days old: dropped
    assert state.tickets == {}
    assert state.complaints == {}
    assert state.orders == {}
    assert state.order_value == {}
    # monthly buckets are kept for 13 months
    assert state.monthly_value == {month_of(T0.timestamp()): 100.0}


def test_prune_monthly_and_departures() -> None:
    state = fold(
        [
            order(T0, "o-1", "paid"),
            contact(T0, "c-1", "departed", is_key=True),
            contact(T0 + timedelta(days=89), "c-2", "departed", is_key=True),
        ]
    )
    month0 = month_of(T0.timestamp())
    now = T0.timestamp() + 91 * DAY
    prune(state, now, 120)
    assert [d[1] for d in state.departures] == ["c-2"]
    prune(state, datetime(2025, 3, 31, tzinfo=UTC).timestamp(), 120)  # month0 + 12
    assert set(state.monthly_value) == {month0}
    prune(state, datetime(2025, 4, 1, tzinfo=UTC).timestamp(), 120)  # month0 + 13
    assert state.monthly_value == {}
    assert state.monthly_orders == {}


# -- order times, CSAT history, renewal ----------------------------------------------------
def test_order_times_keep_the_last_sixteen_counted_orders_sorted() -> None:
    days = [5, 1, 17, 3, 9, 0, 12, 8, 2, 16, 4, 11, 6, 15, 7, 10, 14, 13]  # 18 orders
    state = fold([order(T0 + timedelta(days=d), f"o-{d}", "placed") for d in days])
    expected = [(T0 + timedelta(days=d)).timestamp() for d in range(2, 18)]
    assert state.order_times == expected
    # paying a counted order does not count it again; an older late order is forgotten at once
    apply_event(state, order(T0 + timedelta(days=20), "o-9", "paid"), CONFIG)
    apply_event(state, order(T0 - timedelta(days=1), "o-old", "paid"), CONFIG)
    assert state.order_times == expected


def test_cancel_removes_the_counted_order_time_once() -> None:
    t1, t2, t3 = (T0 + timedelta(days=d) for d in (0, 1, 2))
    state = fold([order(t1, "o-1", "placed"), order(t2, "o-2", "paid"), order(t3, "o-3", "placed")])
    apply_event(state, order(t3 + timedelta(hours=1), "o-2", "cancelled"), CONFIG)
    assert state.order_times == [t1.timestamp(), t3.timestamp()]
    apply_event(state, order(t3 + timedelta(hours=2), "o-2", "cancelled"), CONFIG)
    apply_event(state, order(t3 + timedelta(hours=3), "o-1", "refunded"), CONFIG)
    apply_event(state, order(t3 + timedelta(hours=4), "o-9", "cancelled"), CONFIG)  # never counted
    assert state.order_times == [t1.timestamp(), t3.timestamp()]


def test_csat_recent_keeps_the_last_three_scores_oldest_first() -> None:
    state = fold([csat(T0 + timedelta(hours=h), score) for h, score in enumerate([5, 4, 3, 2])])
    assert state.csat_recent == [4, 3, 2]
    assert state.last_csat == 2
    apply_event(state, ticket(T0 + timedelta(days=1), "t-9", nps=3), CONFIG)  # no csat
    assert state.csat_recent == [4, 3, 2]


def test_renewal_at_follows_the_newest_account_event() -> None:
    renewal = datetime(2025, 1, 1, 12, tzinfo=UTC)
    state = fold([account(T0, renewal_at=renewal)])
    assert state.renewal_at == renewal.timestamp()
    apply_event(state, account(T0 - timedelta(days=1), renewal_at=T0), CONFIG)  # older: ignored
    assert state.renewal_at == renewal.timestamp()
    apply_event(state, account(T0 + timedelta(days=1)), CONFIG)  # newer, without a date
    assert state.renewal_at is None
    assert "renewal_at" not in state.account


def test_state_written_before_the_new_fields_still_decodes() -> None:
    state = rich_state()
    doc = orjson.loads(state.to_bytes())
    for key in ("odt", "csr", "ren"):
        del doc[key]
    back = CustomerState.from_bytes(orjson.dumps(doc))
    assert back.order_times == []
    assert back.csat_recent == []
    assert back.renewal_at == datetime(2025, 1, 1, tzinfo=UTC).timestamp()
    assert (back.logins, back.account, back.alerts) == (state.logins, state.account, state.alerts)


def test_minimal_legacy_state_decodes() -> None:
    legacy = {
        "v": 1,
        "id": CID,
        "acct": {"name": "Acme", "owner": "am-1"},
        "acct_at": 1.0,
        "first": 1.0,
        "last": 2.0,
        "login_at": 2.0,
        "order_at": None,
        "lg": {"19782": 2},
        "cp": {},
        "tk": {},
        "od": {},
        "ov": {},
        "mo": {},
        "mv": {},
        "os": {},
        "ot": {},
        "kc": {},
        "dep": [],
        "csat": 4,
        "nps": None,
        "ids": ["e-1", "e-2"],
        "eval": None,
        "al": {},
        "lf": {},
    }
    state = CustomerState.from_bytes(orjson.dumps(legacy))
    assert state.logins == {19782: 2}
    assert (state.order_times, state.csat_recent, state.renewal_at) == ([], [], None)
    assert state.last_csat == 4  # the old single score is not invented into csat_recent
    assert CustomerState.from_bytes(state.to_bytes()) == state


# -- calendar helpers -----------------------------------------------------------------------
DATES = st.datetimes(
    min_value=datetime(1990, 1, 1),
    max_value=datetime(2100, 12, 31, 23, 59, 59),
    timezones=st.just(UTC),
)


@given(DATES)
def test_month_of_matches_datetime(dt: datetime) -> None:
    assert month_of(dt.timestamp()) == dt.year * 12 + dt.month - 1


@given(DATES)
def test_month_start_is_the_first_instant_of_the_month(dt: datetime) -> None:
    first = datetime(dt.year, dt.month, 1, tzinfo=UTC)
    assert month_start(month_of(dt.timestamp())) == first.timestamp()


@given(DATES)
def test_day_of_matches_datetime(dt: datetime) -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert day_of(dt.timestamp()) == (dt - epoch).days


@pytest.mark.parametrize(
    "dt",
    [
        datetime(2000, 2, 29, 23, 59, 59, tzinfo=UTC),
        datetime(2000, 3, 1, tzinfo=UTC),
        datetime(2100, 2, 28, 12, tzinfo=UTC),
        datetime(2100, 3, 1, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2024, 1, 1, tzinfo=UTC),
    ],
)
def test_month_of_edge_dates(dt: datetime) -> None:
    assert month_of(dt.timestamp()) == dt.year * 12 + dt.month - 1


# -- properties -------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(
    offsets=st.lists(st.integers(0, 60 * 86400), max_size=40),
    extra=st.integers(0, 20 * 86400),
    data=st.data(),
)
def test_logins_7d_rolls_over_day_buckets(offsets: list[int], extra: int, data: Any) -> None:
    base = T0.timestamp()
    times = [base + o for o in offsets]
    order_ = data.draw(st.permutations(range(len(times))))
    state = CustomerState(CID)
    for i in order_:
        occurred = datetime.fromtimestamp(times[i], UTC)
        apply_event(state, login(occurred, event_id=f"l-{i}"), CONFIG)
    t = max(times, default=base) + extra
    today = day_of(t)
    expected = sum(1 for x in times if today - 6 <= day_of(x) <= today)
    assert compute(state, t, frozenset({"logins_7d"})) == {"logins_7d": expected}


EVENTS = st.lists(event_strategy(), max_size=40)
PROPERTY_CONFIG = StateConfig(currency_rates={"EUR": 1.0, "USD": 0.92})


@settings(max_examples=200, deadline=None)
@given(events=EVENTS, data=st.data())
def test_reapplying_events_is_idempotent(events: list[InputEvent], data: Any) -> None:
    once = fold(events, PROPERTY_CONFIG).to_bytes()
    state = fold(events, PROPERTY_CONFIG)
    replay = data.draw(st.lists(st.sampled_from(events), max_size=80) if events else st.just([]))
    for event in [*data.draw(st.permutations(events)), *replay]:
        assert apply_event(state, event, PROPERTY_CONFIG) is False
    assert state.to_bytes() == once


@settings(max_examples=200, deadline=None)
@given(events=EVENTS)
def test_state_round_trip_for_random_events(events: list[InputEvent]) -> None:
    state = fold(events, PROPERTY_CONFIG)
    raw = state.to_bytes()
    back = CustomerState.from_bytes(raw)
    assert back == state
    assert back.to_bytes() == raw
    # the decoded state keeps folding exactly like the original
    more = login(T0 + timedelta(days=201), event_id="after")
    apply_event(state, more, PROPERTY_CONFIG)
    apply_event(back, more, PROPERTY_CONFIG)
    assert back.to_bytes() == state.to_bytes()
