"""Hostile values from upstream: bounded at the door, harmless in what churnguard writes.

Pure tests (no broker): what the schemas reject, what summaries and task titles show of
names an upstream system controls, and that the largest accepted amounts keep a customer's
state storable.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from rules.engine import Engine, EngineConfig
from rules.loader import load_rules
from rules.templates import render, shown
from schemas import AlertEvent, DecodeError, TaskEvent, decode_input
from schemas.inputs import MAX_AMOUNT, MAX_TEXT
from streams.settings import BUILTIN_PACKS
from streams.state import CustomerState
from tests.factories import account, departed

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOSTILE_NAME = "Evil & Co <script>alert(1)</script>\x1b[31m\u202eRTL\x00\nnext {{ name }}"
UNSAFE = re.compile("[<>\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_a_shown_value_carries_no_markup_and_no_control_characters() -> None:
    text = shown(HOSTILE_NAME)
    assert not UNSAFE.search(text)
    assert "&lt;script&gt;" in text
    assert "Evil &amp; Co" in text
    assert "\n" not in text and "\t" not in shown("a\tb")
    assert shown(2.0) == "2.00"


def test_a_value_never_becomes_a_placeholder_or_markup_in_the_template() -> None:
    out = render("{{ name }} left; owner {{ owner }}", {"name": HOSTILE_NAME, "owner": "<b>"})
    assert out.endswith("owner &lt;b&gt;")
    assert "{{ name }}" in out  # shown as text: a value is not rendered again


def test_alert_summary_and_task_title_escape_names_from_upstream() -> None:
    engine = Engine(load_rules([BUILTIN_PACKS]), EngineConfig(), wall_clock=lambda: 0.0)
    state = CustomerState("cust-1")
    engine.apply(state, account(START, name=HOSTILE_NAME))
    result = engine.apply(state, departed(START + timedelta(hours=1), "ct-1", HOSTILE_NAME))
    alerts = [o for o in result.outputs if isinstance(o, AlertEvent) and o.status == "firing"]
    tasks = [o for o in result.outputs if isinstance(o, TaskEvent)]
    assert [a.rule_id for a in alerts] == ["key-contact-departed"]
    assert tasks, "the departure rule opens a task"
    for text in [alerts[0].summary, alerts[0].description or "", tasks[0].title]:
        assert not UNSAFE.search(text), text
    assert "&lt;script&gt;" in alerts[0].summary


def _order(amount: float | str, event_id: str = "o-1", at: datetime = START) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "customer_id": "cust-1",
            "occurred_at": at.isoformat(),
            "order_id": event_id,
            "amount": amount,
            "currency": "EUR",
            "status": "paid",
        }
    )


@pytest.mark.parametrize("amount", [1e308, float(MAX_AMOUNT) * 10, -1])
def test_amounts_beyond_the_bound_are_rejected_with_a_reason(amount: float) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_input("order", _order(amount))
    assert caught.value.reason == "schema"
    assert "amount" in caught.value.message


def test_many_orders_at_the_largest_amount_keep_the_state_storable() -> None:
    engine = Engine(load_rules([BUILTIN_PACKS]), EngineConfig(), wall_clock=lambda: 0.0)
    state = CustomerState("cust-1")
    for i in range(200):
        at = START + timedelta(hours=i)
        engine.apply(state, decode_input("order", _order(str(MAX_AMOUNT), f"o-{i}", at)))
    restored = CustomerState.from_bytes(state.to_bytes())
    assert restored.to_bytes() == state.to_bytes()
    later = decode_input("order", _order(5, "o-last", START + timedelta(days=20)))
    result = engine.apply(restored, later)
    assert result.applied and not result.errors
    revenue = [s.model().features["revenue_365d"] for s in result.snapshots]
    assert all(0 < r < float("inf") for r in revenue)


@pytest.mark.parametrize(
    ("kind", "field", "extra"),
    [
        ("account", "name", {"owner": "am-1"}),
        ("account", "owner", {"name": "Acme"}),
        ("contact", "name", {"contact_id": "c", "is_key_contact": True, "change": "added"}),
        ("login", "user_id", {"channel": "web"}),
    ],
)
def test_texts_longer_than_the_bound_are_rejected(
    kind: str, field: str, extra: dict[str, object]
) -> None:
    base = {"event_id": "e-1", "customer_id": "cust-1", "occurred_at": START.isoformat()}
    ok = {**base, **extra, field: "x" * MAX_TEXT}
    decode_input(kind, orjson.dumps(ok))
    with pytest.raises(DecodeError) as caught:
        decode_input(kind, orjson.dumps({**ok, field: "x" * (MAX_TEXT + 1)}))
    assert caught.value.reason == "schema"
    assert field in caught.value.message


def test_with_names_off_outputs_show_ids_instead_of_names() -> None:
    config = EngineConfig(output_names=False)
    engine = Engine(load_rules([BUILTIN_PACKS]), config, wall_clock=lambda: 0.0)
    state = CustomerState("cust-1")
    first = engine.apply(state, account(START, name="Acme Holding"))
    result = engine.apply(state, departed(START + timedelta(hours=1), "ct-42", "Ada Lovelace"))
    outputs = [*first.outputs, *result.outputs]
    text = orjson.dumps([o.model_dump(mode="json") for o in outputs]).decode()
    text += b"".join(s.to_bytes() for s in [*first.snapshots, *result.snapshots]).decode()
    assert "Acme" not in text and "Ada" not in text
    alert = next(o for o in result.outputs if isinstance(o, AlertEvent))
    assert "ct-42" in alert.summary and "cust-1" in alert.summary
    assert all(s.document["name"] is None for s in [*first.snapshots, *result.snapshots])
    named = Engine(load_rules([BUILTIN_PACKS]), EngineConfig(), wall_clock=lambda: 0.0)
    again = CustomerState("cust-1")
    named.apply(again, account(START, name="Acme Holding"))
    shown = named.apply(again, departed(START + timedelta(hours=1), "ct-42", "Ada Lovelace"))
    assert "Ada Lovelace" in next(o for o in shown.outputs if isinstance(o, AlertEvent)).summary
