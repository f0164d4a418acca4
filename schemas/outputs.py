"""Output event models: what churnguard publishes for customer-success tools."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas._text import bounded_text, bounded_utf8

Severity = Literal["info", "low", "medium", "high", "critical"]
"""How urgent an alert is, from least to most."""
AlertStatus = Literal["firing", "resolved", "notice"]
Resolution = Literal["cleared", "inhibited", "snoozed"]
TaskPriority = Literal["low", "medium", "high", "urgent"]
HealthEventKind = Literal["snapshot", "tier_changed"]

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
    status: AlertStatus = Field(
        description="firing, then resolved; `notice` is a one-off info event with no lifecycle "
        "(rule_id `tier_changed`): nothing resolves it."
    )
    summary: str = Field(description="Rendered, human-readable text.")
    description: str = Field("", description="The rule's longer explanation, rendered.")
    evidence: dict[str, Any] = Field(description="The feature values that made the rule fire.")
    labels: dict[str, str] = Field(default_factory=dict)
    tier: str | None = None
    fired_at: AwareDatetime = Field(description="Event time the alert started firing.")
    resolved_at: AwareDatetime | None = Field(None, description="Event time it resolved.")
    resolution: Resolution | None = Field(
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
    priority: TaskPriority
    due_at: AwareDatetime
    status: Literal["open", "escalated", "cancelled"]
    escalation_of: str | None = Field(
        None, description="For an escalation task: the task_id that was not acknowledged."
    )
    created_at: AwareDatetime


class FactorScore(OutputModel):
    """One health factor's part in the score: value, points on its grid, weight, contribution."""

    value: float | None = Field(description="The factor's value; null when it had no data.")
    points: int = Field(ge=0, le=100)
    weight: float = Field(description="Weight after the missing-data policy, out of 100.")
    contribution: float = Field(description="weight x points / 100: its share of the score.")
    missing: bool = Field(description="No data: the points come from the missing-data policy.")


class HealthScore(OutputModel):
    """The health score with the parts it is made of."""

    score: int = Field(ge=0, le=100)
    trend_7d: int = Field(description="Score now minus the score 7 days ago (0 if unknown).")
    profile: str = Field(description="The weight profile used ('' for the default weights).")
    factors: dict[str, FactorScore]


class Rfm(OutputModel):
    """Purchase history in lifetimes' terms and the customer's quintile scores."""

    frequency: int = Field(description="Repeat purchase days.")
    recency_days: int = Field(description="Days between the first and the last purchase day.")
    age_days: int = Field(description="Days since the first purchase day (lifetimes' T).")
    monetary: float = Field(description="Average value per repeat purchase day.")
    r_score: int = Field(ge=0, le=5, description="1-5 against the population; 0: unscored.")
    f_score: int = Field(ge=0, le=5)
    m_score: int = Field(ge=0, le=5)
    cut_points: dict[str, Any] | None = Field(
        description="The population quintile cut points the scores used (null: none yet)."
    )


class Clv(OutputModel):
    """Customer lifetime value from the fitted BG/NBD and Gamma-Gamma model."""

    expected_orders_90d: float
    p_alive: float = Field(description="1.0 for one-time buyers by construction.")
    clv_12m: float
    model: str = Field(description="The parameter file's fitted_at and source.")


class CustomerHealth(OutputModel):
    """Compacted snapshot of one customer: tier, health, stage, RFM, CLV, open alerts."""

    customer_id: str
    name: str | None
    event: HealthEventKind = Field(
        "snapshot", description="tier_changed: this snapshot announces a tier change."
    )
    reasons: list[str] = Field(
        default_factory=list, description="What changed materially since the last snapshot."
    )
    tier: str | None
    previous_tier: str | None = None
    tier_changed_at: AwareDatetime | None = None
    at_risk: bool = False
    lifecycle_stage: str | None = None
    health: HealthScore | None = None
    rfm: Rfm | None = None
    clv: Clv | None = None
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
