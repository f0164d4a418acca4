"""Unit and property tests for per-customer rolling state (streams.state)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    AccountEvent,
    ContactEvent,
    InputEvent,
    LoginEvent,
    OrderEvent,
    TicketEvent,
)
from streams.features import compute
from streams.state import (
    DAY,
    STATE_VERSION,
    CustomerState,
    StateConfig,
    apply_event,
    day_of,
    month_of,
    prune,
)

CID = "cust-1"
T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
CONFIG = StateConfig()
_seq = itertools.count()

BUCKETS = (
    "logins",
    "complaints",
    "tickets",
    "orders",
    "order_value",
    "monthly_orders",
    "monthly_value",
)


# -- event helpers ----------------------------------------------------------------------
def _common(when: datetime, event_id: str | None) -> dict[str, Any]:
    return {
        "event_id": event_id or f"e-{next(_seq)}",
        "customer_id": CID,
        "occurred_at": when,
    }


def login(when: datetime, event_id: str | None = None) -> LoginEvent:
    return LoginEvent(**_common(when, event_id), user_id="u-1", channel="web")


def order(
    when: datetime,
    order_id: str,
    status: str,
    amount: str = "100.00",
    currency: str = "EUR",
    event_id: str | None = None,
) -> OrderEvent:
    return OrderEvent(
        **_common(when, event_id),
        order_id=order_id,
        amount=Decimal(amount),
        currency=currency,
        status=status,
    )


def ticket(
    when: datetime,
    ticket_id: str,
    status: str = "opened",
    kind: str = "complaint",
    severity: str = "high",
    event_id: str | None = None,
    **extra: Any,
) -> TicketEvent:
    return TicketEvent(
        **_common(when, event_id),
        ticket_id=ticket_id,
        kind=kind,
        severity=severity,
        status=status,
        **extra,
    )


def contact(
    when: datetime,
    contact_id: str,
    change: str,
    is_key: bool,
    name: str | None = "Ada",
    event_id: str | None = None,
) -> ContactEvent:
    return ContactEvent(
        **_common(when, event_id),
        contact_id=contact_id,
        name=name,
        is_key_contact=is_key,
        change=change,
    )


def account(when: datetime, event_id: str | None = None, **fields: Any) -> AccountEvent:
    values: dict[str, Any] = {"name": "Acme", "owner": "am-7", "csm": "csm-3"}
    values.update(fields)
    return AccountEvent(**_common(when, event_id), **values)


def fold(events: list[InputEvent], config: StateConfig = CONFIG) -> CustomerState:
    state = CustomerState(CID)
    for event in events:
        apply_event(state, event, config)
    return state


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


def _event_strategy() -> st.SearchStrategy[InputEvent]:
    when = st.integers(0, 200 * 86400).map(lambda s: T0 + timedelta(seconds=s))
    eid = st.sampled_from([f"e-{i}" for i in range(30)])
    common = st.fixed_dictionaries(
        {"event_id": eid, "customer_id": st.just(CID), "occurred_at": when}
    )
    logins = st.builds(
        lambda c: LoginEvent(**c, user_id="u", channel="web"),
        common,
    )
    orders = st.builds(
        lambda c, oid, amount, cur, status: OrderEvent(
            **c, order_id=oid, amount=amount, currency=cur, status=status
        ),
        common,
        st.sampled_from(["o-1", "o-2", "o-3"]),
        st.decimals(min_value=0, max_value=10000, places=2, allow_nan=False),
        st.sampled_from(["EUR", "USD", "JPY"]),
        st.sampled_from(["placed", "paid", "cancelled", "refunded"]),
    )
    tickets = st.builds(
        lambda c, tid, kind, sev, status, csat: TicketEvent(
            **c, ticket_id=tid, kind=kind, severity=sev, status=status, csat=csat
        ),
        common,
        st.sampled_from(["t-1", "t-2", "t-3"]),
        st.sampled_from(["complaint", "incident", "question"]),
        st.sampled_from(["low", "critical"]),
        st.sampled_from(["opened", "reopened", "resolved", "closed"]),
        st.none() | st.integers(1, 5),
    )
    contacts = st.builds(
        lambda c, cid, key, change: ContactEvent(
            **c, contact_id=cid, name=cid.upper(), is_key_contact=key, change=change
        ),
        common,
        st.sampled_from(["c-1", "c-2"]),
        st.booleans(),
        st.sampled_from(["added", "role_changed", "departed"]),
    )
    accounts = st.builds(
        lambda c, owner: AccountEvent(**c, name="Acme", owner=owner),
        common,
        st.sampled_from(["am-1", "am-2"]),
    )
    return st.one_of(logins, orders, tickets, contacts, accounts)


EVENTS = st.lists(_event_strategy(), max_size=40)
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
