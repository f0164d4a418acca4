"""Unit tests of the read model's pure parts: decoding, key layout, script arguments, plans."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from redis._parsers.base import BaseParser
from redis.exceptions import ResponseError

from agents.readmodel import (
    CHURNED_STAGE,
    ReadModelKeys,
    WriteOptions,
    alert_call,
    applied_call,
    customer_fields,
    decode_output,
    epoch_ms,
    lua_source,
    plan_batch,
    snapshot_call,
    task_call,
)
from agents.redis_cli import glob_escape
from agents.redis_client import redis_options, redis_url
from agents.redis_sink import backoff_delays, is_transient
from schemas.codec import DecodeError, encode
from schemas.outputs import AlertEvent, CustomerHealth, TaskEvent
from streams.settings import Settings

KEYS = ReadModelKeys("cg:")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def snapshot(**overrides: Any) -> CustomerHealth:
    values: dict[str, Any] = {
        "customer_id": "c1",
        "name": "Acme",
        "tier": "key",
        "lifecycle_stage": "active",
        "at_risk": True,
        "health": {
            "score": 35,
            "trend_7d": -12,
            "profile": "b2b",
            "factors": {
                "logins": {
                    "value": 2.0,
                    "points": 20,
                    "weight": 60.0,
                    "contribution": 12.0,
                    "missing": False,
                },
            },
        },
        "rfm": None,
        "clv": {"expected_orders_90d": 1.5, "p_alive": 0.8, "clv_12m": 1200.0, "model": "m"},
        "features": {"days_since_last_login": 9, "complaints_7d": 2},
        "open_alerts": ["al-1"],
        "as_of": T0,
    }
    values.update(overrides)
    return CustomerHealth.model_validate(values)


def alert(**overrides: Any) -> AlertEvent:
    values: dict[str, Any] = {
        "alert_id": "al-1",
        "customer_id": "c1",
        "rule_id": "inactivity",
        "severity": "high",
        "status": "firing",
        "summary": "Acme went quiet",
        "evidence": {"days_since_last_login": 14},
        "tier": "key",
        "fired_at": T0,
        "emitted_at": T0 + timedelta(seconds=3),
    }
    values.update(overrides)
    return AlertEvent.model_validate(values)


def task(**overrides: Any) -> TaskEvent:
    values: dict[str, Any] = {
        "task_id": "tk-1",
        "alert_id": "al-1",
        "customer_id": "c1",
        "rule_id": "inactivity",
        "assignee": "ann",
        "assignee_role": "csm",
        "title": "Call Acme",
        "priority": "high",
        "due_at": T0 + timedelta(days=1),
        "status": "open",
        "created_at": T0 + timedelta(seconds=4),
    }
    values.update(overrides)
    return TaskEvent.model_validate(values)


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes | None


def test_epoch_ms_is_exact_for_microseconds_and_offsets() -> None:
    moment = datetime(2026, 3, 1, 13, 0, 0, 999_999, tzinfo=timezone(timedelta(hours=1)))
    assert epoch_ms(moment) == epoch_ms(datetime(2026, 3, 1, 12, 0, 0, 999_000, tzinfo=UTC))
    assert epoch_ms(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)) == 1000


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "not_json"),
        (b"", "not_json"),
        (b"{nope", "not_json"),
        (b"[1, 2]", "not_object"),
        (b"{}", "missing_field"),
        (orjson.dumps({**orjson.loads(encode(alert())), "severity": "apocalyptic"}), "schema"),
    ],
)
def test_decode_output_names_what_is_wrong(raw: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_output("alert", raw)
    assert caught.value.reason == reason


def test_decode_output_round_trips_each_kind() -> None:
    for kind, event in (("health", snapshot()), ("alert", alert()), ("task", task())):
        assert decode_output(kind, encode(event)) == event  # type: ignore[arg-type]


def test_customer_hash_has_the_documented_fields_and_omits_nulls() -> None:
    fields = customer_fields(snapshot())
    assert fields["customer_id"] == "c1"
    assert fields["name"] == "Acme"
    assert fields["tier"] == "key"
    assert fields["lifecycle_stage"] == "active"
    assert fields["at_risk"] == "1"
    assert fields["health"] == "35"
    assert fields["health_trend_7d"] == "-12"
    assert fields["health_profile"] == "b2b"
    assert orjson.loads(fields["factors"])["logins"]["contribution"] == 12.0
    assert "rfm" not in fields
    assert orjson.loads(fields["clv"])["clv_12m"] == 1200.0
    assert orjson.loads(fields["features"]) == {"days_since_last_login": 9, "complaints_7d": 2}
    assert orjson.loads(fields["open_alerts"]) == ["al-1"]
    assert fields["as_of"] == "2026-03-01T12:00:00Z"
    assert fields["as_of_ms"] == str(epoch_ms(T0))


def test_customer_without_score_or_name_has_no_health_fields() -> None:
    fields = customer_fields(snapshot(health=None, name=None, tier=None, at_risk=False))
    assert {"health", "health_trend_7d", "health_profile", "name", "tier"}.isdisjoint(fields)
    assert fields["factors"] == "{}"
    assert fields["at_risk"] == "0"


def test_snapshot_call_ranks_by_risk_in_the_tier_set() -> None:
    call = snapshot_call(KEYS, snapshot(), WriteOptions(churned_ttl_s=60, history_kept=7))
    assert call.keys[:5] == (
        "cg:customer:c1",
        "cg:customer:c1:health",
        "cg:at-risk",
        "cg:at-risk:tier:key",
        "cg:tiers",
    )
    op, prefix, cid, as_of_ms, score, risk, tier, churned, ttl, kept, count = call.args[:11]
    assert (op, prefix, cid, score, risk, tier, churned, ttl, kept) == (
        "snapshot",
        "cg:",
        "c1",
        "35",
        "65",
        "key",
        "0",
        "60",
        "7",
    )
    assert as_of_ms == str(epoch_ms(T0))
    pairs = call.args[11:]
    assert len(pairs) == 2 * int(count)
    assert dict(zip(pairs[::2], pairs[1::2], strict=True)) == customer_fields(snapshot())


def test_snapshot_without_tier_or_score_and_churned() -> None:
    call = snapshot_call(
        KEYS, snapshot(tier=None, health=None, lifecycle_stage=CHURNED_STAGE), WriteOptions()
    )
    assert call.keys[3] == "cg:at-risk:tier:none"
    assert call.args[4:8] == ("", "", "", "1")


def test_alert_call_orders_by_resolution_then_emission() -> None:
    firing = alert_call(KEYS, alert(), WriteOptions(recent_alerts=99))
    assert firing.keys == (
        "cg:alert:al-1",
        "cg:customer:c1:alerts",
        "cg:alerts:firing",
        "cg:alerts:firing:rule:inactivity",
        "cg:alerts:recent",
        "cg:customer:c1",
        "cg:customer:c1:order",
    )
    assert firing.args[4:] == (
        str(epoch_ms(T0)),
        str(epoch_ms(T0 + timedelta(seconds=3))),
        "firing",
        str(epoch_ms(T0)),
        "99",
    )
    assert AlertEvent.model_validate_json(firing.args[3]) == alert()
    resolved_at = T0 + timedelta(hours=5)
    resolved = alert_call(
        KEYS,
        alert(status="resolved", resolved_at=resolved_at, resolution="cleared"),
        WriteOptions(),
    )
    assert resolved.args[4] == str(epoch_ms(resolved_at))
    assert resolved.args[7] == str(epoch_ms(T0))


def test_task_call_orders_by_created_at() -> None:
    call = task_call(KEYS, task())
    assert call.keys == ("cg:customer:c1:tasks", "cg:customer:c1:order", "cg:customer:c1")
    assert call.args[2] == "tk-1"
    assert call.args[4] == str(epoch_ms(T0 + timedelta(seconds=4)))


def test_applied_call_lists_each_partition_once_in_order() -> None:
    call = applied_call(KEYS, {("b", 1): 7, ("a", 0): 3})
    assert call.keys == ("cg:sink:applied",)
    assert call.args == ("applied", "cg:", "a:0", "3", "b:1", "7")


def test_plan_batch_skips_bad_records_and_keeps_order() -> None:
    kinds = {"h": "health", "a": "alert", "t": "task"}
    records = [
        Record("h", 0, 10, encode(snapshot())),
        Record("a", 1, 4, b"not json"),
        Record("a", 1, 5, encode(alert())),
        Record("t", 0, 2, orjson.dumps({"task_id": "x"})),
        Record("x", 0, 0, b"{}"),
        Record("t", 0, 3, encode(task())),
    ]
    plan = plan_batch(records, kinds, KEYS, WriteOptions())  # type: ignore[arg-type]
    assert [call.args[0] for call in plan.calls] == ["snapshot", "alert", "task", "applied"]
    assert [call.origin for call in plan.calls[:3]] == ["h[0]@10", "a[1]@5", "t[0]@3"]
    assert [(s.topic, s.offset, s.reason) for s in plan.skipped] == [
        ("a", 4, "not_json"),
        ("t", 2, "missing_field"),
        ("x", 0, "unknown_topic"),
    ]
    assert plan.events == {"h": 1, "a": 1, "t": 1}
    # skipped records still count as applied: they would never decode on a retry either
    assert plan.last_offsets == {("h", 0): 10, ("a", 1): 5, ("t", 0): 3, ("x", 0): 0}


def test_empty_batch_plans_nothing() -> None:
    plan = plan_batch([], {}, KEYS, WriteOptions())
    assert plan.calls == [] and plan.skipped == [] and plan.events == {}


def test_lua_source_handles_every_operation() -> None:
    source = lua_source()
    for op in ("snapshot", "alert", "task", "applied"):
        assert f"op == '{op}'" in source


def test_backoff_doubles_up_to_the_cap() -> None:
    assert list(itertools.islice(backoff_delays(0.1, 1.0), 6)) == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def parse_error(reply: str) -> ResponseError:
    """The exception redis-py raises for an error reply (as the pipeline returns it)."""
    error = BaseParser.parse_error(reply)
    assert isinstance(error, ResponseError)
    return error


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (parse_error("OOM command not allowed when used memory > 'maxmemory'."), True),
        (parse_error("READONLY You can't write against a read only replica."), True),
        (parse_error("NOSCRIPT No matching script."), True),
        (parse_error("BUSY Redis is busy running a script."), True),
        (parse_error("WRONGTYPE Operation against a key holding the wrong kind of value"), False),
        (parse_error("ERR user_script:12: Script attempted to access nonexistent global"), False),
        (parse_error("ERR the customer BUSY-1 is unknown"), False),
    ],
)
def test_only_passing_redis_errors_are_retried(error: ResponseError, transient: bool) -> None:
    assert is_transient(error) is transient


def test_glob_escape_matches_the_prefix_literally() -> None:
    assert glob_escape("cg[1]*?\\:") == "cg\\[1\\]\\*\\?\\\\:"


def test_redis_options_from_settings() -> None:
    plain = Settings(redis_url="redis://h:1/2", redis_username="u", redis_password="s3cret")
    assert redis_url(plain) == "redis://h:1/2"
    options = redis_options(plain)
    assert options["username"] == "u" and options["password"] == "s3cret"
    assert "ssl_ca_certs" not in options
    tls = Settings(
        redis_url="redis://h:1/2",
        redis_tls=True,
        redis_ca_file="/ca.pem",
        redis_cert_file="/c.pem",
        redis_key_file="/k.pem",
    )
    assert redis_url(tls) == "rediss://h:1/2"
    assert {k: redis_options(tls)[k] for k in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")} == {
        "ssl_ca_certs": "/ca.pem",
        "ssl_certfile": "/c.pem",
        "ssl_keyfile": "/k.pem",
    }
    assert "password" not in redis_options(tls)
