"""The Redis read model's writes, as data: output events → calls of the read-model Lua script.

Pure: no Redis, no Kafka. The key layout and the ordering rules are in docs/read-model.md;
agents/readmodel.lua applies a call atomically, agents/redis_sink.py sends them in pipelines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Literal, Protocol

import orjson
from pydantic import BaseModel, ValidationError

from schemas.codec import DecodeError, decode_json, encode
from schemas.outputs import AlertEvent, CustomerHealth, TaskEvent

OutputKind = Literal["health", "alert", "task"]
"""What an output topic carries: customer-health snapshots, alert events or task events."""

OutputEvent = CustomerHealth | AlertEvent | TaskEvent

MODELS: dict[OutputKind, type[OutputEvent]] = {
    "health": CustomerHealth,
    "alert": AlertEvent,
    "task": TaskEvent,
}
HEALTH_HISTORY_KEPT = 400
CHURNED_STAGE = "churned"
NO_TIER = "none"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def lua_source() -> str:
    """The read-model Lua script (agents/readmodel.lua)."""
    return resources.files("agents").joinpath("readmodel.lua").read_text(encoding="utf-8")


class OutputRecord(Protocol):
    """What the planner needs of a Kafka record (aiokafka's ConsumerRecord has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True)
class ReadModelKeys:
    """Key names of the read model under one prefix (docs/read-model.md)."""

    prefix: str

    def customer(self, customer_id: str) -> str:
        """The customer's hash: its latest snapshot."""
        return f"{self.prefix}customer:{customer_id}"

    def health_history(self, customer_id: str) -> str:
        """The customer's health history (sorted set by as_of_ms)."""
        return f"{self.prefix}customer:{customer_id}:health"

    def customer_alerts(self, customer_id: str) -> str:
        """alert_id → latest AlertEvent JSON, for one customer."""
        return f"{self.prefix}customer:{customer_id}:alerts"

    def customer_tasks(self, customer_id: str) -> str:
        """task_id → latest TaskEvent JSON, for one customer."""
        return f"{self.prefix}customer:{customer_id}:tasks"

    def customer_order(self, customer_id: str) -> str:
        """Writer-only: the order key of each stored alert and task of the customer."""
        return f"{self.prefix}customer:{customer_id}:order"

    def alert(self, alert_id: str) -> str:
        """The latest AlertEvent JSON of one alert."""
        return f"{self.prefix}alert:{alert_id}"

    @property
    def firing(self) -> str:
        """Alert ids now firing, scored by fired_at ms."""
        return f"{self.prefix}alerts:firing"

    def firing_rule(self, rule_id: str) -> str:
        """Alert ids of one rule now firing."""
        return f"{self.prefix}alerts:firing:rule:{rule_id}"

    @property
    def recent(self) -> str:
        """The capped stream of alert events."""
        return f"{self.prefix}alerts:recent"

    @property
    def at_risk(self) -> str:
        """Customers ranked by risk (100 - health)."""
        return f"{self.prefix}at-risk"

    def at_risk_tier(self, tier: str | None) -> str:
        """Customers of one tier ranked by risk (`none` for customers without a tier)."""
        return f"{self.prefix}at-risk:tier:{tier or NO_TIER}"

    @property
    def tiers(self) -> str:
        """The tiers seen."""
        return f"{self.prefix}tiers"

    @property
    def applied(self) -> str:
        """`{topic}:{partition}` → last offset written."""
        return f"{self.prefix}sink:applied"


@dataclass(frozen=True)
class ScriptCall:
    """One call of the read-model Lua script: its KEYS and ARGV."""

    keys: tuple[str, ...]
    args: tuple[str, ...]
    origin: str = ""
    """Where the event came from (``topic[partition]@offset``), for logs."""


@dataclass(frozen=True)
class WriteOptions:
    """Knobs of the writes that come from settings."""

    churned_ttl_s: int = 30 * 86400
    recent_alerts: int = 10000
    history_kept: int = HEALTH_HISTORY_KEPT


@dataclass(frozen=True)
class SkippedRecord:
    """A record that cannot be written, with why (DecodeError reasons, or "unknown_topic")."""

    topic: str
    partition: int
    offset: int
    reason: str
    error: str


@dataclass
class BatchPlan:
    """The script calls of a batch of records, what was skipped, and the events per topic."""

    calls: list[ScriptCall] = field(default_factory=list)
    skipped: list[SkippedRecord] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    last_offsets: dict[tuple[str, int], int] = field(default_factory=dict)


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch of an aware datetime (exact, no float rounding)."""
    return (moment - _EPOCH) // _MS


def decode_output(kind: OutputKind, raw: bytes | None) -> OutputEvent:
    """The output event in a Kafka value; DecodeError ("not_json", "schema", …) when it is not."""
    if not raw:
        raise DecodeError("not_json", "empty value")
    value = decode_json(raw)
    if not isinstance(value, dict):
        raise DecodeError("not_object", f"value is a JSON {type(value).__name__}")
    try:
        return MODELS[kind].model_validate(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<value>'}: {e['msg']}" for e in errors[:5]
        )
        reason = "missing_field" if all(e["type"] == "missing" for e in errors) else "schema"
        raise DecodeError(reason, detail) from None


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _model_json(model: BaseModel) -> str:
    return encode(model).decode()


def customer_fields(snapshot: CustomerHealth) -> dict[str, str]:
    """The customer hash of a snapshot; fields whose value is null are absent."""
    wire = snapshot.model_dump(mode="json")
    fields: dict[str, str] = {
        "customer_id": snapshot.customer_id,
        "at_risk": "1" if snapshot.at_risk else "0",
        "factors": _json(wire["health"]["factors"] if snapshot.health else {}),
        "features": _json(wire["features"]),
        "open_alerts": _json(wire["open_alerts"]),
        "as_of": wire["as_of"],
        "as_of_ms": str(epoch_ms(snapshot.as_of)),
    }
    optional = {
        "name": snapshot.name,
        "tier": snapshot.tier,
        "lifecycle_stage": snapshot.lifecycle_stage,
        "rfm": _json(wire["rfm"]) if snapshot.rfm else None,
        "clv": _json(wire["clv"]) if snapshot.clv else None,
    }
    if snapshot.health is not None:
        optional["health"] = str(snapshot.health.score)
        optional["health_trend_7d"] = str(snapshot.health.trend_7d)
        optional["health_profile"] = snapshot.health.profile
    fields.update({name: value for name, value in optional.items() if value is not None})
    return fields


def snapshot_call(
    keys: ReadModelKeys, snapshot: CustomerHealth, options: WriteOptions
) -> ScriptCall:
    """The write of a customer-health snapshot (kept only if not older than the stored one)."""
    cid = snapshot.customer_id
    fields = customer_fields(snapshot)
    score = snapshot.health.score if snapshot.health is not None else None
    pairs = [item for name_value in fields.items() for item in name_value]
    return ScriptCall(
        keys=(
            keys.customer(cid),
            keys.health_history(cid),
            keys.at_risk,
            keys.at_risk_tier(snapshot.tier),
            keys.tiers,
            keys.customer_alerts(cid),
            keys.customer_tasks(cid),
            keys.customer_order(cid),
        ),
        args=(
            "snapshot",
            keys.prefix,
            cid,
            fields["as_of_ms"],
            "" if score is None else str(score),
            "" if score is None else str(100 - score),
            snapshot.tier or "",
            "1" if snapshot.lifecycle_stage == CHURNED_STAGE else "0",
            str(options.churned_ttl_s),
            str(options.history_kept),
            str(len(fields)),
            *pairs,
        ),
    )


def alert_call(keys: ReadModelKeys, alert: AlertEvent, options: WriteOptions) -> ScriptCall:
    """The write of an alert event (ordered by resolved_at or fired_at, then emitted_at)."""
    cid = alert.customer_id
    return ScriptCall(
        keys=(
            keys.alert(alert.alert_id),
            keys.customer_alerts(cid),
            keys.firing,
            keys.firing_rule(alert.rule_id),
            keys.recent,
            keys.customer(cid),
            keys.customer_order(cid),
        ),
        args=(
            "alert",
            keys.prefix,
            alert.alert_id,
            _model_json(alert),
            str(epoch_ms(alert.resolved_at or alert.fired_at)),
            str(epoch_ms(alert.emitted_at)),
            alert.status,
            str(epoch_ms(alert.fired_at)),
            str(options.recent_alerts),
        ),
    )


def task_call(keys: ReadModelKeys, task: TaskEvent) -> ScriptCall:
    """The write of a task event (kept unless the stored one was created later)."""
    cid = task.customer_id
    return ScriptCall(
        keys=(keys.customer_tasks(cid), keys.customer_order(cid), keys.customer(cid)),
        args=("task", keys.prefix, task.task_id, _model_json(task), str(epoch_ms(task.created_at))),
    )


def applied_call(keys: ReadModelKeys, last_offsets: Mapping[tuple[str, int], int]) -> ScriptCall:
    """The write of the last offset applied per topic partition (never moves back)."""
    pairs = [
        item
        for (topic, partition), offset in sorted(last_offsets.items())
        for item in (f"{topic}:{partition}", str(offset))
    ]
    return ScriptCall(keys=(keys.applied,), args=("applied", keys.prefix, *pairs))


def event_call(keys: ReadModelKeys, event: OutputEvent, options: WriteOptions) -> ScriptCall:
    """The write of any output event."""
    if isinstance(event, CustomerHealth):
        return snapshot_call(keys, event, options)
    if isinstance(event, AlertEvent):
        return alert_call(keys, event, options)
    return task_call(keys, event)


def plan_batch(
    records: Iterable[OutputRecord],
    kinds: Mapping[str, OutputKind],
    keys: ReadModelKeys,
    options: WriteOptions,
) -> BatchPlan:
    """The script calls for records in order, then one call for their offsets.

    `kinds` maps each output topic to what it carries. Records that cannot be decoded are
    listed in `skipped` (their offsets still count as applied: they will never decode).
    """
    plan = BatchPlan()
    for record in records:
        plan.last_offsets[(record.topic, record.partition)] = record.offset
        kind = kinds.get(record.topic)
        if kind is None:
            plan.skipped.append(_skipped(record, "unknown_topic", "not a read-model topic"))
            continue
        try:
            event = decode_output(kind, record.value)
        except DecodeError as exc:
            plan.skipped.append(_skipped(record, exc.reason, exc.message))
            continue
        call = event_call(keys, event, options)
        origin = f"{record.topic}[{record.partition}]@{record.offset}"
        plan.calls.append(ScriptCall(call.keys, call.args, origin))
        plan.events[record.topic] = plan.events.get(record.topic, 0) + 1
    if plan.last_offsets:
        plan.calls.append(applied_call(keys, plan.last_offsets))
    return plan


def _skipped(record: OutputRecord, reason: str, error: str) -> SkippedRecord:
    return SkippedRecord(record.topic, record.partition, record.offset, reason, error)
