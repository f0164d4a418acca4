"""10,000 hostile messages mixed with valid events, through a real worker on the real broker.

Bad UTF-8, broken and deeply nested JSON, NaN, infinite and 1e308 amounts, far-future and
pre-1990 times, wrong types, huge ids and payloads, header garbage, empty values, and names
made of markup, template syntax and control characters: every message is either
dead-lettered with a reason or accepted and processed; the worker never crashes; every
valid event is counted and reflected in its customer's state; no alert summary or task title
carries markup or control characters from input. The figures are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import KINDS, Broker, Outputs, Producer, Worker
from tests.test_hostile_values import UNSAFE

pytestmark = pytest.mark.integration

SEED = 16
MESSAGES = 10_000
VALID_CUSTOMERS = 100
KNOWN_REASONS = {
    "not_json",
    "not_object",
    "missing_field",
    "schema",
    "cloudevent",
    "timestamp_out_of_range",
}
NASTY_TEXTS = (
    "<script>alert(1)</script>",
    "{{ name }}",
    "${jndi:ldap://x/a}",
    "'; DROP TABLE customers; --",
    "\x1b[2J\x1b[31mred",
    "\u202eevil\u202c",
    "a\x00b\x07c",
    "line\nbreak\rreturn",
    "<img src=x onerror=alert(1)>",
    "&amp;&lt;",
    "\ufeff\u200bzero width",
)


@dataclass
class Message:
    """One message to send: topic kind, key, value, headers."""

    kind: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class Plan:
    """The messages and what the valid ones must leave in state."""

    messages: list[Message] = field(default_factory=list)
    logins: dict[str, int] = field(default_factory=dict)  # valid customer -> logins (last 6 d)
    orders: dict[str, int] = field(default_factory=dict)  # valid customer -> placed orders
    categories: Counter[str] = field(default_factory=Counter)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _base(eid: str, cid: str, at: datetime) -> dict[str, Any]:
    return {"event_id": eid, "customer_id": cid, "occurred_at": _iso(at)}


def _valid(plan: Plan, now: datetime, rng: random.Random) -> None:
    """Accounts, logins in the last six days and placed orders for the valid customers."""
    for i in range(VALID_CUSTOMERS):
        cid = f"v-{i:03d}"
        plan.logins[cid] = rng.randint(1, 5)
        plan.orders[cid] = rng.randint(0, 3)
        events: list[tuple[str, dict[str, Any]]] = [
            (
                "accounts",
                {
                    **_base(f"{cid}-a", cid, now - timedelta(days=40)),
                    "name": f"Valid {i}",
                    "owner": "am-1",
                },
            )
        ]
        for n in range(plan.logins[cid]):
            at = now - timedelta(days=rng.uniform(0.1, 6.0))
            events.append(
                ("logins", {**_base(f"{cid}-l{n}", cid, at), "user_id": "u", "channel": "web"})
            )
        for n in range(plan.orders[cid]):
            at = now - timedelta(days=rng.uniform(1.0, 30.0))
            order = {
                "order_id": f"{cid}-o{n}",
                "amount": "120.50",
                "currency": "EUR",
                "status": "placed",
            }
            events.append(("orders", {**_base(f"{cid}-o{n}", cid, at), **order}))
        for kind, value in events:
            plan.messages.append(Message(kind, cid.encode(), orjson.dumps(value)))
            plan.categories["valid"] += 1


def _hostile(n: int, now: datetime, rng: random.Random) -> tuple[str, Message]:
    """One hostile message of a random category (accepted ones use customers h-…)."""
    kind = rng.choice(KINDS)
    cid = f"h-{n % 300:03d}"
    base = _base(f"h-{n}", cid, now - timedelta(hours=rng.uniform(1, 500)))
    category = rng.choice(
        [
            "bad_utf8", "not_json", "deep", "nan", "huge_number", "far_time", "wrong_type",
            "huge_id", "header_garbage", "empty", "huge_payload", "nasty_names", "binary_key",
        ]
    )  # fmt: skip
    key: bytes | None = cid.encode()
    headers: list[tuple[str, bytes]] = []
    value: bytes | None
    if category == "bad_utf8":
        value = b'{"event_id":"' + bytes(rng.randrange(128, 256) for _ in range(12)) + b'"}'
    elif category == "not_json":
        value = orjson.dumps(base)[: rng.randint(1, 40)] + rng.choice([b"", b"}}", b"\x00", b"'"])
    elif category == "deep":
        depth = rng.randint(1_100, 60_000)
        value = b'{"a":' * depth + b"1" + b"}" * depth
    elif category == "nan":
        literal = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999"])
        value = orjson.dumps({**base, "order_id": "o", "currency": "EUR", "status": "paid"})
        value = value[:-1] + b',"amount":' + literal + b"}"
        kind = "orders"
    elif category == "huge_number":
        amount = rng.choice([1e308, -1e308, 1.7976931348623157e308, 1e16, -0.01])
        value = orjson.dumps(
            {**base, "order_id": "o", "amount": amount, "currency": "EUR", "status": "paid"}
        )
        kind = "orders"
    elif category == "far_time":
        year = rng.choice([1, 1000, 1900, 1969, 1989, 2101, 3000, 9999])
        value = orjson.dumps(
            {**base, "occurred_at": f"{year:04d}-06-01T00:00:00Z", "user_id": "u", "channel": "web"}
        )
        kind = "logins"
    elif category == "wrong_type":
        field_name, bad = rng.choice(
            [
                ("customer_id", 12345), ("customer_id", None), ("customer_id", ["a"]),
                ("occurred_at", 1_700_000_000), ("occurred_at", {"t": 1}), ("event_id", True),
                ("channel", 3.5), ("amount", "lots"), ("is_key_contact", "yes"),
            ]
        )  # fmt: skip
        value = orjson.dumps({**base, "user_id": "u", "channel": "web", field_name: bad})
    elif category == "huge_id":
        size = rng.choice([257, 5_000, 200_000])
        which = rng.choice(["customer_id", "event_id", "user_id"])
        value = orjson.dumps({**base, "user_id": "u", "channel": "web", which: "x" * size})
        kind = "logins"
    elif category == "header_garbage":
        value = orjson.dumps({**base, "user_id": "u", "channel": "web"})
        kind = "logins"
        for _ in range(rng.randint(1, 6)):
            name = rng.choice(
                ["ce_specversion", "ce_id", "ce_time", "x-trace", "\u202ename", "ce_"]
            )
            headers.append((name, bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))))
    elif category == "empty":
        value = rng.choice([None, b"", b" ", b"null", b"[]", b'""'])
    elif category == "huge_payload":  # a valid login with a big unknown field: accepted
        padding = "p" * rng.choice([10_000, 100_000, 400_000])
        value = orjson.dumps({**base, "user_id": "u", "channel": "web", "padding": padding})
        kind = "logins"
    elif category == "nasty_names":  # valid accounts and departures named to do harm: accepted
        name = rng.choice(NASTY_TEXTS) + rng.choice(NASTY_TEXTS)
        if rng.random() < 0.5:
            value = orjson.dumps({**base, "name": name, "owner": rng.choice(NASTY_TEXTS)})
            kind = "accounts"
        else:
            contact = {
                "contact_id": f"ct-{n}",
                "name": name,
                "is_key_contact": True,
                "change": "departed",
            }
            value = orjson.dumps({**base, **contact})
            kind = "contacts"
    else:  # binary_key: a key that is not text, with a value that is not an event
        key = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        value = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
    return category, Message(kind, key, value, headers)


def make_plan(now: datetime) -> Plan:
    """Valid events for the valid customers and hostile messages, shuffled, 10,000 in all."""
    rng = random.Random(SEED)
    plan = Plan()
    _valid(plan, now, rng)
    for n in range(MESSAGES - len(plan.messages)):
        category, message = _hostile(n, now, rng)
        plan.categories[category] += 1
        plan.messages.append(message)
    rng.shuffle(plan.messages)
    return plan


async def _send_all(bootstrap: str, worker: Worker, messages: list[Message]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                worker.topics.name(m.kind), m.value, key=m.key, headers=m.headers or None
            )
            for m in messages
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _events_total(text: str) -> Counter[str]:
    """churnguard_events_total summed by outcome."""
    outcomes: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name == "churnguard_events":
            for sample in family.samples:
                if sample.name == "churnguard_events_total":
                    outcomes[sample.labels["outcome"]] += int(sample.value)
    return outcomes


async def _until(check: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(1.0)


async def test_hostile_input_is_dead_lettered_or_processed_and_nothing_valid_is_lost(
    pipeline: tuple[Worker, Producer, Outputs], broker: Broker
) -> None:
    worker, _, outputs = pipeline
    now = datetime.now(UTC)
    plan = make_plan(now)
    assert len(plan.messages) == MESSAGES
    await _send_all(broker.bootstrap, worker, plan.messages)

    seen: Counter[str] = Counter()

    async def all_counted() -> bool:
        assert worker.proc is not None and worker.proc.poll() is None, worker.log()[-3000:]
        seen.clear()
        seen.update(_events_total(await worker.metrics()))
        return sum(seen.values()) - seen["rekeyed"] >= MESSAGES

    await _until(all_counted, 240, f"{MESSAGES} messages counted in churnguard_events_total")
    letters = await outputs.wait_for(
        lambda t, v: t.endswith("deadletter"), count=seen["deadletter"], timeout=120
    )
    reasons = Counter(v["reason"] for v in letters)
    accepted = seen["applied"] + seen["duplicate"]
    print(
        f"\nhostile input: {MESSAGES} messages ({dict(plan.categories)}); "
        f"dead-lettered {seen['deadletter']} by reason {dict(reasons)}; accepted {accepted} "
        f"(applied {seen['applied']}, duplicate {seen['duplicate']}); worker crashes 0"
    )
    assert seen["deadletter"] + accepted == MESSAGES
    assert len(letters) == seen["deadletter"]
    assert set(reasons) <= KNOWN_REASONS
    assert all(v["error"] for v in letters)

    # every valid event is in its customer's state
    for cid, logins in plan.logins.items():
        snap = await worker.wait_customer(
            cid, lambda s, n=logins: s["features"]["logins_7d"] == n, timeout=30
        )
        assert snap["features"]["order_count"] == plan.orders[cid]

    # nothing from input reaches a summary or a title unescaped
    await outputs.poll()
    texts = [
        v.get("summary") or v.get("title") or ""
        for t, v, _ in outputs.records
        if t.endswith(("alerts", "tasks"))
    ]
    assert any("&lt;" in s for s in texts), "the departures of nastily named contacts fire"
    unsafe = [s for s in texts if UNSAFE.search(s)]
    assert unsafe == []
    assert worker.proc is not None and worker.proc.poll() is None
    assert "Traceback" not in worker.log()
