"""Tests for the deterministic synthetic traffic generator (streams.synthetic)."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from itertools import islice, pairwise

import pytest

from streams.synthetic import (
    DEFAULT_MIX,
    TOPIC_KINDS,
    CustomerPlan,
    Persona,
    SyntheticRecord,
    generate,
    generate_events,
    plan_customers,
)

START = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday
DAYS = 70
TROUBLE = 30
EQUAL_MIX = dict.fromkeys(Persona, 1.0)


@pytest.fixture(scope="module")
def plans() -> list[CustomerPlan]:
    """Forty customers, ten of each persona."""
    return plan_customers(40, seed=11, mix=EQUAL_MIX)


@pytest.fixture(scope="module")
def records(plans: list[CustomerPlan]) -> list[SyntheticRecord]:
    """One 70-day run with trouble on day 30."""
    return list(generate(plans, start=START, days=DAYS, seed=11, trouble_day=TROUBLE))


@pytest.fixture(scope="module")
def by_customer(records: list[SyntheticRecord]) -> dict[str, list[SyntheticRecord]]:
    """The run's records grouped by customer id, in stream order."""
    grouped: dict[str, list[SyntheticRecord]] = defaultdict(list)
    for record in records:
        grouped[record.key].append(record)
    return grouped


def _of(plans: list[CustomerPlan], persona: Persona) -> list[CustomerPlan]:
    return [plan for plan in plans if plan.persona is persona]


def _day(record: SyntheticRecord, start: datetime = START) -> int:
    return (record.occurred_at - start) // timedelta(days=1)


# --------------------------------------------------------------------------------------------
# plan_customers
# --------------------------------------------------------------------------------------------


def test_plan_customers_default_mix_and_master_data() -> None:
    plans = plan_customers(1000)
    assert [p.customer_id for p in plans[:3]] == ["cust-000001", "cust-000002", "cust-000003"]
    assert len({p.customer_id for p in plans}) == 1000
    counts = Counter(p.persona for p in plans)
    assert counts == {
        Persona.HEALTHY: 820,
        Persona.GOING_QUIET: 60,
        Persona.COMPLAINING: 60,
        Persona.LOSING_CHAMPION: 60,
    }
    assert sum(DEFAULT_MIX.values()) == pytest.approx(1.0)
    assert all(re.fullmatch(r"am-(0[1-9]|1\d|20)", p.owner) for p in plans)
    assert all(p.csm is None or re.fullmatch(r"csm-(0[1-9]|10)", p.csm) for p in plans)
    no_csm = sum(p.csm is None for p in plans) / len(plans)
    assert 0.25 <= no_csm <= 0.35
    assert {p.segment for p in plans} == {"smb", "mid-market", "enterprise"}
    assert all(p.name for p in plans)


def test_plan_customers_is_deterministic_and_seeded() -> None:
    assert plan_customers(200, seed=3) == plan_customers(200, seed=3)
    assert plan_customers(200, seed=3) != plan_customers(200, seed=4)


def test_plan_customers_custom_mix_and_edge_cases() -> None:
    only_quiet = plan_customers(10, mix={Persona.GOING_QUIET: 1.0})
    assert {p.persona for p in only_quiet} == {Persona.GOING_QUIET}
    halves = Counter(p.persona for p in plan_customers(10, mix=EQUAL_MIX))
    assert sum(halves.values()) == 10
    assert all(2 <= n <= 3 for n in halves.values())
    assert plan_customers(0) == []
    with pytest.raises(ValueError):
        plan_customers(-1)
    with pytest.raises(ValueError):
        plan_customers(5, mix={Persona.HEALTHY: -1.0})
    with pytest.raises(ValueError):
        plan_customers(5, mix={Persona.HEALTHY: 0.0})


# --------------------------------------------------------------------------------------------
# generate: stream-level properties
# --------------------------------------------------------------------------------------------


def test_generate_is_deterministic(plans: list[CustomerPlan]) -> None:
    first = list(generate(plans, start=START, days=20, seed=5))
    second = list(generate(plans, start=START, days=20, seed=5))
    assert first == second
    assert [r.value for r in first] != [
        r.value for r in generate(plans, start=START, days=20, seed=6)
    ]


def test_generate_is_lazy(plans: list[CustomerPlan]) -> None:
    stream = generate(plans, start=START, days=10_000)
    assert isinstance(stream, Iterator)
    assert len(list(islice(stream, 50))) == 50


def test_records_are_globally_time_ordered(records: list[SyntheticRecord]) -> None:
    times = [r.occurred_at for r in records]
    assert times == sorted(times)


def test_accounts_come_first_at_start(
    plans: list[CustomerPlan], records: list[SyntheticRecord]
) -> None:
    head = records[: len(plans)]
    assert [r.topic_kind for r in head] == ["account"] * len(plans)
    assert [r.key for r in head] == [p.customer_id for p in plans]
    assert all(r.occurred_at == START for r in head)
    assert sum(r.topic_kind == "account" for r in records) == len(plans)
    for plan, record in zip(plans, head, strict=True):
        value = record.value
        assert value["name"] == plan.name
        assert value["owner"] == plan.owner
        assert value.get("csm") == plan.csm
        assert value["segment"] == plan.segment
        assert value["industry"] and value["region"]
        renewal = datetime.fromisoformat(value["renewal_at"])
        assert START < renewal <= START + timedelta(days=366)


def test_every_record_has_the_common_fields(records: list[SyntheticRecord]) -> None:
    end = START + timedelta(days=DAYS)
    for record in records:
        value = record.value
        assert record.topic_kind in TOPIC_KINDS
        assert value["customer_id"] == record.key
        assert isinstance(value["event_id"], str) and value["event_id"]
        assert value["occurred_at"].endswith("+00:00")
        assert value["occurred_at"] == record.occurred_at.isoformat()
        assert datetime.fromisoformat(value["occurred_at"]) == record.occurred_at
        assert record.occurred_at.utcoffset() == timedelta(0)
        assert START <= record.occurred_at < end
        json.dumps(value)  # JSON-ready as is


def test_event_ids_are_unique(records: list[SyntheticRecord]) -> None:
    ids = [r.value["event_id"] for r in records]
    assert len(ids) == len(set(ids))


def test_kind_specific_fields(records: list[SyntheticRecord]) -> None:
    kinds = Counter(r.topic_kind for r in records)
    assert set(kinds) == set(TOPIC_KINDS)
    assert kinds["login"] > kinds["ticket"] > kinds["order"]
    for record in records:
        value = record.value
        if record.topic_kind == "login":
            assert value["user_id"].startswith(record.key)
            assert value["channel"] in {"web", "mobile", "api", "other"}
        elif record.topic_kind == "order":
            assert re.fullmatch(r"\d+\.\d{2}", value["amount"])
            assert Decimal("200") <= Decimal(value["amount"]) <= Decimal("20000")
            assert value["currency"] in {"EUR", "USD", "GBP"}
            assert value["status"] == "paid"
            assert value["order_id"]
        elif record.topic_kind == "ticket":
            assert value["kind"] in {"complaint", "question", "request", "praise"}
            assert value["severity"] in {"low", "medium", "high", "critical"}
            assert value["status"] in {"opened", "resolved", "closed"}
            assert 1 <= value.get("csat", 1) <= 5
            assert 0 <= value.get("nps", 0) <= 10
        elif record.topic_kind == "contact":
            assert value["is_key_contact"] is True
            assert value["change"] in {"added", "departed"}
            assert value["contact_id"] and value["name"] and value["role"]
    currencies = Counter(r.value["currency"] for r in records if r.topic_kind == "order")
    assert currencies.most_common(1)[0][0] == "EUR"


def test_non_midnight_and_fractional_start_keep_strings_and_times_equal(
    plans: list[CustomerPlan],
) -> None:
    for start in (
        datetime(2025, 3, 3, 13, 37, 11, tzinfo=UTC),
        datetime(2025, 3, 3, 23, 59, 59, 250_000, tzinfo=UTC),
        datetime(2025, 3, 3, 9, 0, tzinfo=timezone(timedelta(hours=2))),
    ):
        out = list(generate(plans[:10], start=start, days=3))
        assert out[0].occurred_at == start
        for record in out:
            assert record.value["occurred_at"] == record.occurred_at.isoformat()
            assert record.value["occurred_at"].endswith("+00:00")
            assert start <= record.occurred_at < start + timedelta(days=3)


def test_generate_rejects_bad_arguments(plans: list[CustomerPlan]) -> None:
    with pytest.raises(ValueError):
        generate(plans, start=datetime(2025, 3, 3), days=3)  # naive
    with pytest.raises(ValueError):
        generate(plans, start=START, days=-1)
    with pytest.raises(ValueError):
        generate(plans, start=START, days=3, trouble_day=-2)
    with pytest.raises(ValueError):
        generate([plans[0], plans[0]], start=START, days=3)
    assert list(generate(plans, start=START, days=0)) == [
        r for r in generate(plans, start=START, days=1) if r.topic_kind == "account"
    ]


# --------------------------------------------------------------------------------------------
# generate: persona behaviour
# --------------------------------------------------------------------------------------------


def test_healthy_customers_log_in_recently_and_rarely_complain(
    plans: list[CustomerPlan], by_customer: dict[str, list[SyntheticRecord]]
) -> None:
    for plan in _of(plans, Persona.HEALTHY):
        mine = by_customer[plan.customer_id]
        logins = [r for r in mine if r.topic_kind == "login"]
        assert any(_day(r) >= DAYS - 7 for r in logins), plan.customer_id
        users = {r.value["user_id"] for r in logins}
        assert 2 <= len(users) <= 4
        complaint_days = sorted(
            _day(r)
            for r in mine
            if r.topic_kind == "ticket"
            and r.value["kind"] == "complaint"
            and r.value["status"] == "opened"
        )
        assert all(b - a >= 60 for a, b in pairwise(complaint_days))
        assert not any(r.topic_kind == "contact" and r.value["change"] == "departed" for r in mine)
        added = [r for r in mine if r.topic_kind == "contact"]
        assert 1 <= len(added) <= 3
        assert all(_day(r) == 0 for r in added)


def test_healthy_customers_order_on_a_rhythm(
    plans: list[CustomerPlan], by_customer: dict[str, list[SyntheticRecord]]
) -> None:
    for plan in _of(plans, Persona.HEALTHY):
        days = [_day(r) for r in by_customer[plan.customer_id] if r.topic_kind == "order"]
        assert 1 <= len(days) <= 5, plan.customer_id
        assert all(16 <= b - a <= 48 for a, b in pairwise(days))


def test_going_quiet_customers_stop_logging_in_at_trouble_day(
    plans: list[CustomerPlan], by_customer: dict[str, list[SyntheticRecord]]
) -> None:
    quiet = _of(plans, Persona.GOING_QUIET)
    assert quiet
    for plan in quiet:
        logins = [r for r in by_customer[plan.customer_id] if r.topic_kind == "login"]
        assert any(_day(r) < TROUBLE for r in logins)
        assert all(_day(r) < TROUBLE for r in logins)


def test_complaining_customers_spike_after_trouble_day(
    plans: list[CustomerPlan], by_customer: dict[str, list[SyntheticRecord]]
) -> None:
    complaining = _of(plans, Persona.COMPLAINING)
    assert complaining
    with_low_csat = 0
    for plan in complaining:
        complaints = [
            r
            for r in by_customer[plan.customer_id]
            if r.topic_kind == "ticket" and r.value["kind"] == "complaint"
        ]
        opened = [r for r in complaints if r.value["status"] == "opened"]
        spike = [r for r in opened if TROUBLE <= _day(r) < TROUBLE + 7]
        assert len(spike) >= 5, plan.customer_id
        assert {r.value["severity"] for r in spike} <= {"medium", "high"}
        assert len([r for r in opened if _day(r) >= TROUBLE + 7]) <= 1  # back to rare
        with_low_csat += any(r.value.get("csat", 5) <= 2 for r in complaints)
        # Logins carry on.
        assert any(
            r.topic_kind == "login" and _day(r) >= DAYS - 7 for r in by_customer[plan.customer_id]
        )
    assert with_low_csat >= len(complaining) // 2


def test_losing_champion_customers_lose_one_key_contact_on_trouble_day(
    plans: list[CustomerPlan], by_customer: dict[str, list[SyntheticRecord]]
) -> None:
    champions = _of(plans, Persona.LOSING_CHAMPION)
    assert champions
    for plan in champions:
        mine = by_customer[plan.customer_id]
        departed = [
            r for r in mine if r.topic_kind == "contact" and r.value["change"] == "departed"
        ]
        assert len(departed) == 1, plan.customer_id
        leaver = departed[0]
        assert leaver.value["is_key_contact"] is True
        assert _day(leaver) == TROUBLE
        contact_id = leaver.value["contact_id"]
        assert any(
            r.topic_kind == "contact"
            and r.value["change"] == "added"
            and r.value["contact_id"] == contact_id
            for r in mine
        )
        # The champion's user no longer logs in; the others do.
        later = [r for r in mine if r.topic_kind == "login" and r.occurred_at > leaver.occurred_at]
        assert later
        assert all(r.value.get("contact_id") != contact_id for r in later)


def test_other_personas_never_lose_a_contact(
    plans: list[CustomerPlan], records: list[SyntheticRecord]
) -> None:
    champions = {p.customer_id for p in _of(plans, Persona.LOSING_CHAMPION)}
    departed = {
        r.key for r in records if r.topic_kind == "contact" and r.value["change"] == "departed"
    }
    assert departed == champions


def test_default_trouble_day_is_forty_percent_of_the_span(plans: list[CustomerPlan]) -> None:
    out = list(generate(_of(plans, Persona.LOSING_CHAMPION)[:3], start=START, days=50))
    departed = [r for r in out if r.topic_kind == "contact" and r.value["change"] == "departed"]
    assert len(departed) == 3
    assert {_day(r) for r in departed} == {20}


def test_demo_scale_run_has_every_behaviour() -> None:
    demo = plan_customers(1000, seed=7)
    out = list(generate(demo, start=START, days=21, seed=7))
    assert len({r.key for r in out}) == 1000
    kinds = Counter(r.topic_kind for r in out)
    assert kinds["account"] == 1000
    assert kinds["login"] > 5 * kinds["ticket"] > 5 * kinds["order"]
    departed = sum(r.topic_kind == "contact" and r.value["change"] == "departed" for r in out)
    assert departed == 60


# --------------------------------------------------------------------------------------------
# generate_events (benchmark)
# --------------------------------------------------------------------------------------------


def test_generate_events_yields_exactly_n_sorted_records() -> None:
    out = list(generate_events(500, 6_000, start=START, seed=3))
    assert len(out) == 6_000
    assert len({r.key for r in out}) == 500
    times = [r.occurred_at for r in out]
    assert times == sorted(times)
    ids = [r.value["event_id"] for r in out]
    assert len(ids) == len(set(ids))
    assert all(r.value["customer_id"] == r.key for r in out)
    kinds = Counter(r.topic_kind for r in out)
    assert kinds["account"] == 500
    assert kinds.most_common(1)[0][0] == "login"
    assert list(generate_events(500, 6_000, start=START, seed=3)) == out


def test_generate_events_mixes_personas() -> None:
    out = list(generate_events(1_000, 20_000, start=START))
    complaints = sum(
        r.topic_kind == "ticket"
        and r.value["kind"] == "complaint"
        and r.value["status"] == "opened"
        for r in out
    )
    departed = sum(r.topic_kind == "contact" and r.value["change"] == "departed" for r in out)
    assert complaints >= 60
    assert departed == 60


@pytest.mark.parametrize(("n_customers", "n_events"), [(100, 40), (1, 500), (7, 7), (3, 0)])
def test_generate_events_counts(n_customers: int, n_events: int) -> None:
    out = list(generate_events(n_customers, n_events, start=START))
    assert len(out) == n_events
    assert len({r.key for r in out}) == min(n_customers, n_events)


def test_generate_events_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        generate_events(10, -1, start=START)
    with pytest.raises(ValueError):
        generate_events(0, 10, start=START)
    with pytest.raises(ValueError):
        generate_events(10, 10, start=datetime(2025, 3, 3))


# --------------------------------------------------------------------------------------------
# Contract: every record validates through the schemas package (when it is there)
# --------------------------------------------------------------------------------------------


def test_every_record_validates_against_the_input_schemas(
    records: list[SyntheticRecord],
) -> None:
    schemas = pytest.importorskip("schemas")
    decode_input = getattr(schemas, "decode_input", None)
    if decode_input is None:
        pytest.skip("schemas.decode_input is not available yet")
    sample = list(records) + list(generate_events(300, 3_000, start=START, seed=2))
    for record in sample:
        event = decode_input(record.topic_kind, json.dumps(record.value).encode())
        assert event.event_id == record.value["event_id"]
        assert event.customer_id == record.key
        assert event.occurred_at == record.occurred_at
