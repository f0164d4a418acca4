"""Output event models: what churnguard publishes for customer-success tools."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas._text import bounded_text, bounded_utf8

Severity = Literal["info", "low", "medium", "high", "critical"]
"""How urgent an alert is, from least to most."""

MAX_ERROR_CHARS = 2000
DEFAULT_MAX_RAW_BYTES = 16384


class OutputModel(BaseModel):
    """Base of all output events: unknown fields are rejected, every field is always emitted."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


class AlertEvent(OutputModel):
    """One step of an alert's lifecycle for a customer: `firing`, then `resolved`."""

    alert_id: str = Field(description="Deterministic from customer, rule and firing start.")
    customer_id: str
    rule_id: str
    severity: Severity
    status: Literal["firing", "resolved"]
    summary: str = Field(description="Rendered, human-readable text.")
    description: str = Field("", description="The rule's longer explanation, rendered.")
    evidence: dict[str, Any] = Field(description="The feature values that made the rule fire.")
    labels: dict[str, str] = Field(default_factory=dict)
    tier: str | None = None
    fired_at: AwareDatetime = Field(description="Event time the alert started firing.")
    resolved_at: AwareDatetime | None = Field(None, description="Event time it resolved.")
    resolution: Literal["cleared", "inhibited", "snoozed"] | None = Field(
        None,
        description="Why it resolved: its condition cleared, a more important alert of the "
        "same customer inhibits it, or its task was dismissed with a snooze. Null while firing.",
    )
    emitted_at: AwareDatetime = Field(description="Wall time this message was produced.")


class TaskEvent(OutputModel):
    """A task for a person at the customer-success team: opened, escalated or cancelled."""

    task_id: str = Field(description="Deterministic from the alert and the task step.")
    alert_id: str
    customer_id: str
    rule_id: str
    assignee: str = Field(description="Person id resolved from the account (owner, csm, …).")
    assignee_role: str
    cc: list[str] = Field(default_factory=list, description="Roles or person ids to inform.")
    title: str
    playbook: str | None = None
    priority: Literal["low", "medium", "high", "urgent"]
    due_at: AwareDatetime
    status: Literal["open", "escalated", "cancelled"]
    escalation_of: str | None = Field(
        None, description="For an escalation task: the task_id that was not acknowledged."
    )
    created_at: AwareDatetime


class CustomerHealth(OutputModel):
    """Compacted snapshot of one customer: tier, features and scores, open alerts."""

    customer_id: str
    name: str | None
    tier: str | None
    features: dict[str, Any]
    open_alerts: list[str] = Field(description="Ids of the customer's alerts now firing.")
    as_of: AwareDatetime


class DeadLetter(OutputModel):
    """An input message churnguard rejected, with where it came from and why."""

    source_topic: str
    partition: int
    offset: int
    key: str | None = Field(description="Original key as UTF-8 (bad bytes replaced), or null.")
    reason: str = Field(description='Short machine code, e.g. "not_json", "schema".')
    error: str = Field(max_length=MAX_ERROR_CHARS, description="Human-readable detail.")
    raw_value: str = Field(
        description="Original value as UTF-8 (bad bytes replaced), size-bounded; ends with "
        '"…[truncated N bytes]" when cut. Empty for a null value.'
    )
    raw_value_size: int = Field(ge=0, description="Size of the original value in bytes.")
    rejected_at: AwareDatetime


def make_dead_letter(
    *,
    source_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    raw: bytes | None,
    reason: str,
    error: str,
    rejected_at: datetime,
    max_raw_bytes: int = DEFAULT_MAX_RAW_BYTES,
) -> DeadLetter:
    """A dead letter for a rejected message, with its value and error bounded in size.

    `raw_value` takes at most `max_raw_bytes` UTF-8 bytes (at least 64), suffix included.
    """
    return DeadLetter(
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        key=None if key is None else key.decode("utf-8", errors="replace"),
        reason=reason,
        error=bounded_text(error, MAX_ERROR_CHARS),
        raw_value=bounded_utf8(raw or b"", max_raw_bytes),
        raw_value_size=len(raw or b""),
        rejected_at=rejected_at,
    )
