"""Query parameters of the HTTP API: parsed and checked, with a clear error for bad input."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_CURSOR = 99_999_999  # eight digits, as the OpenAPI document says
MAX_ID_CHARS = 200
ALERT_STATUSES = ("firing", "resolved", "all")

AlertStatus = Literal["firing", "resolved", "all"]


class BadParameter(ValueError):
    """A query parameter the API cannot accept; ``name`` says which one."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(f"{name}: {message}")


@dataclass(frozen=True)
class AtRiskQuery:
    """``GET /at-risk``: which ranking, which rule's customers, which page."""

    tier: str | None
    rule: str | None
    limit: int
    offset: int


@dataclass(frozen=True)
class AlertsQuery:
    """``GET /alerts``: which alerts and how many."""

    status: AlertStatus
    rule: str | None
    customer: str | None
    limit: int


def parse_limit(params: Mapping[str, str]) -> int:
    """``limit`` as an int in 1..MAX_LIMIT (DEFAULT_LIMIT when absent)."""
    raw = params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit():
        raise BadParameter("limit", f"must be an integer from 1 to {MAX_LIMIT}, got {raw!r}")
    value = int(raw)
    if not 1 <= value <= MAX_LIMIT:
        raise BadParameter("limit", f"must be from 1 to {MAX_LIMIT}, got {value}")
    return value


def parse_cursor(params: Mapping[str, str]) -> int:
    """``cursor`` (the rank to continue from, as returned in ``next_cursor``) as an offset."""
    raw = params.get("cursor")
    if raw is None or raw == "":
        return 0
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_CURSOR:
        raise BadParameter("cursor", f"not a cursor this API returned: {raw!r}")
    return int(raw)


def parse_name(params: Mapping[str, str], name: str) -> str | None:
    """An optional identifier parameter (tier, rule, customer); empty means absent."""
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_ID_CHARS:
        raise BadParameter(name, f"longer than {MAX_ID_CHARS} characters")
    return raw


def parse_status(params: Mapping[str, str]) -> AlertStatus:
    """``status``: firing (default), resolved or all."""
    raw = params.get("status", "firing")
    if raw == "firing":
        return "firing"
    if raw == "resolved":
        return "resolved"
    if raw == "all":
        return "all"
    raise BadParameter("status", f"must be one of {', '.join(ALERT_STATUSES)}, got {raw!r}")


def parse_at_risk(params: Mapping[str, str]) -> AtRiskQuery:
    """The parameters of ``GET /at-risk``; raises BadParameter."""
    return AtRiskQuery(
        tier=parse_name(params, "tier"),
        rule=parse_name(params, "rule"),
        limit=parse_limit(params),
        offset=parse_cursor(params),
    )


def parse_alerts(params: Mapping[str, str]) -> AlertsQuery:
    """The parameters of ``GET /alerts``; raises BadParameter."""
    return AlertsQuery(
        status=parse_status(params),
        rule=parse_name(params, "rule"),
        customer=parse_name(params, "customer"),
        limit=parse_limit(params),
    )
