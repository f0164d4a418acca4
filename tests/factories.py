"""Input event builders and hypothesis strategies shared by the state and feature tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from schemas import (
    AccountEvent,
    ContactEvent,
    InputEvent,
    LoginEvent,
    OrderEvent,
    TaskUpdateEvent,
    TicketEvent,
)
from streams.clv import ClvModel
from streams.state import CustomerState, StateConfig, apply_event

CID = "cust-1"
T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
CONFIG = StateConfig()
_seq = itertools.count()


def _common(when: datetime, event_id: str | None, customer_id: str = CID) -> dict[str, Any]:
    return {
        "event_id": event_id or f"e-{next(_seq)}",
        "customer_id": customer_id,
        "occurred_at": when,
    }


def login(when: datetime, event_id: str | None = None, customer_id: str = CID) -> LoginEvent:
    return LoginEvent(**_common(when, event_id, customer_id), user_id="u-1", channel="web")


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


def paid(
    when: datetime, order_id: str, amount: str = "100.00", currency: str = "EUR"
) -> OrderEvent:
    return order(when, order_id, "paid", amount, currency)


def ticket(
    when: datetime,
    ticket_id: str,
    status: str = "opened",
    kind: str = "complaint",
    severity: str = "high",
    event_id: str | None = None,
    customer_id: str = CID,
    **extra: Any,
) -> TicketEvent:
    return TicketEvent(
        **_common(when, event_id, customer_id),
        ticket_id=ticket_id,
        kind=kind,
        severity=severity,
        status=status,
        **extra,
    )


def complaint(when: datetime, ticket_id: str) -> TicketEvent:
    return ticket(when, ticket_id)


def csat(when: datetime, score: int, ticket_id: str | None = None) -> TicketEvent:
    """A question ticket closed with a CSAT score."""
    tid = ticket_id or f"q-{next(_seq)}"
    return ticket(when, tid, status="closed", kind="question", severity="low", csat=score)


def contact(
    when: datetime,
    contact_id: str,
    change: str,
    is_key: bool = True,
    name: str | None = "Ada",
    event_id: str | None = None,
    customer_id: str = CID,
) -> ContactEvent:
    return ContactEvent(
        **_common(when, event_id, customer_id),
        contact_id=contact_id,
        name=name,
        is_key_contact=is_key,
        change=change,
    )


def departed(when: datetime, contact_id: str, name: str) -> ContactEvent:
    return contact(when, contact_id, "departed", is_key=True, name=name)


def account(
    when: datetime, event_id: str | None = None, customer_id: str = CID, **fields: Any
) -> AccountEvent:
    values: dict[str, Any] = {"name": "Acme", "owner": "am-7", "csm": "csm-3"}
    values.update(fields)
    return AccountEvent(**_common(when, event_id, customer_id), **values)


def task_update(
    when: datetime,
    task_id: str = "tk-1",
    status: str = "acknowledged",
    event_id: str | None = None,
    **extra: Any,
) -> TaskUpdateEvent:
    return TaskUpdateEvent(**_common(when, event_id), task_id=task_id, status=status, **extra)


def fold(events: list[InputEvent], config: StateConfig = CONFIG) -> CustomerState:
    state = CustomerState(CID)
    for event in events:
        apply_event(state, event, config)
    return state


def fold_each(events: list[InputEvent], config: StateConfig = CONFIG) -> dict[str, CustomerState]:
    """Every customer's state with its events folded in, in time order (no rules)."""
    states: dict[str, CustomerState] = {}
    for event in sorted(events, key=lambda e: e.occurred_at):
        state = states.setdefault(event.customer_id, CustomerState(event.customer_id))
        apply_event(state, event, config)
    return states


# -- hypothesis ------------------------------------------------------------------------------
def times(days: int = 200) -> st.SearchStrategy[datetime]:
    """Event times from T0 to ``days`` later, to the microsecond."""
    return st.integers(0, days * 86400 * 10**6).map(lambda us: T0 + timedelta(microseconds=us))


def event_strategy(days: int = 200, ids: int = 30) -> st.SearchStrategy[InputEvent]:
    """Any input event within ``days`` of T0; event ids repeat (from a pool of ``ids``)."""
    eid = st.sampled_from([f"e-{i}" for i in range(ids)])
    common = st.fixed_dictionaries(
        {"event_id": eid, "customer_id": st.just(CID), "occurred_at": times(days)}
    )
    logins = st.builds(lambda c: LoginEvent(**c, user_id="u", channel="web"), common)
    orders = st.builds(
        lambda c, oid, amount, cur, status: OrderEvent(
            **c, order_id=oid, amount=amount, currency=cur, status=status
        ),
        common,
        st.sampled_from([f"o-{i}" for i in range(20)]),
        st.decimals(min_value=0, max_value=10000, places=2, allow_nan=False),
        st.sampled_from(["EUR", "USD", "JPY"]),
        st.sampled_from(["placed", "placed", "paid", "paid", "cancelled", "refunded"]),
    )
    tickets = st.builds(
        lambda c, tid, kind, sev, status, score, nps: TicketEvent(
            **c, ticket_id=tid, kind=kind, severity=sev, status=status, csat=score, nps=nps
        ),
        common,
        st.sampled_from(["t-1", "t-2", "t-3"]),
        st.sampled_from(["complaint", "incident", "question"]),
        st.sampled_from(["low", "critical"]),
        st.sampled_from(["opened", "reopened", "resolved", "closed"]),
        st.none() | st.integers(1, 5),
        st.none() | st.integers(0, 10),
    )
    contacts = st.builds(
        lambda c, cid, key, change: ContactEvent(
            **c, contact_id=cid, name=cid.upper(), is_key_contact=key, change=change
        ),
        common,
        st.sampled_from(["c-1", "c-2", "c-3"]),
        st.booleans(),
        st.sampled_from(["added", "role_changed", "departed"]),
    )
    accounts = st.builds(
        lambda c, owner, renewal: AccountEvent(**c, name="Acme", owner=owner, renewal_at=renewal),
        common,
        st.sampled_from(["am-1", "am-2"]),
        st.none() | times(days + 200),
    )
    updates = st.builds(
        lambda c, status: TaskUpdateEvent(**c, task_id="tk-1", status=status),
        common,
        st.sampled_from(["acknowledged", "done"]),
    )
    return st.one_of(logins, logins, orders, orders, tickets, contacts, accounts, updates)


def clv_model(q: float = 3.6) -> ClvModel:
    """CDNOW's parameters; q = 1 gives no finite mean spend (the model fits no customer)."""
    return ClvModel.model_validate(
        {
            "fitted_at": "2026-01-01T00:00:00Z",
            "calibration_end": "2025-12-31",
            "customers": 1,
            "repeat_customers": 1,
            "bgnbd": {"r": 0.25, "alpha": 33.5, "a": 0.72, "b": 2.16},
            "gamma_gamma": {"p": 6.3, "q": q, "v": 15.0},
            "log_likelihood": -1.0,
            "source": "test",
        }
    )
