"""The rule format: pydantic models of a YAML rule pack (see docs/rules.md)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> float:
    """Seconds in a duration like ``30m``, ``24h``, ``14d``, ``2w`` (plain numbers are seconds)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("duration must not be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"duration must be a string like '24h', got {value!r}")
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"bad duration {value!r}: use a number and one of s, m, h, d, w")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


Duration = Annotated[float, BeforeValidator(parse_duration)]
Severity = Literal["info", "low", "medium", "high", "critical"]
Priority = Literal["low", "medium", "high", "urgent"]
RULE_ID = r"^[a-z0-9][a-z0-9_.-]{0,99}$"
PARAM_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
ParamValue = bool | int | float | str


class TaskSpec(BaseModel):
    """What a firing rule asks a person to do."""

    model_config = ConfigDict(extra="forbid")

    assignee: str = Field(description="account role (owner, csm, …) whose person gets the task")
    cc: list[str] = Field(default_factory=list, description="roles or person ids to copy")
    due: Duration = Field(description="due time after firing")
    title: str | None = Field(None, description="task title template; default: the summary")
    playbook: str | None = None
    business_hours: bool = Field(
        False, description="count `due` in business hours of the configured calendar"
    )
    priority: Priority | None = Field(None, description="default: from the rule's severity")
    escalate_after: Duration | None = Field(
        None, description="not acknowledged by then: an escalation task to the first cc role"
    )
    fallback: str | list[str] | None = Field(
        None,
        description="who gets the task when the account has no person for the role: a queue "
        "id, or a team spread by a stable hash of the customer (default: the configured one)",
    )


class MaxFires(BaseModel):
    """At most ``count`` firings per customer within any ``per`` period."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1)
    per: Duration


class Rule(BaseModel):
    """One early-warning rule: a CEL condition over a customer's features."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(pattern=RULE_ID)
    description: str = ""
    when: str = Field(min_length=1)
    for_: Duration = Field(0.0, alias="for")
    resolve_when: str | None = None
    keep_firing_for: Duration = 0.0
    applies_to: str | None = None
    severity: Severity
    cooldown: Duration = 0.0
    max_fires: MaxFires | None = None
    inhibits: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str
    task: TaskSpec | None = None
    params: dict[Annotated[str, Field(pattern=PARAM_NAME)], ParamValue] = Field(
        default_factory=dict,
        description="named defaults the CEL refers to as params.NAME (replaced by the value "
        "before compiling); `backtest --sweep RULE.NAME=…` varies them",
    )


class RulePack(BaseModel):
    """A file of rules."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule]
