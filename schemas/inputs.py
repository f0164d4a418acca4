"""Input event models: what upstream systems publish to churnguard's input topics."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

MIN_YEAR = 1990
MAX_YEAR = 2100
MAX_TEXT = 256
"""Longest id, name or code accepted in an input field (characters)."""
MAX_AMOUNT = Decimal("1e15")
"""Largest order amount accepted: far above any real order, far below where sums of amounts
stop being finite numbers (a state holding an infinite sum could not be stored)."""

_RFC3339_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _require_rfc3339(value: Any) -> Any:
    """Reject date-time inputs that are not RFC 3339 strings (e.g. epoch numbers)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _RFC3339_PREFIX.match(value):
        return value
    raise ValueError("must be an RFC 3339 date-time string with a UTC offset")


Rfc3339Datetime = Annotated[AwareDatetime, BeforeValidator(_require_rfc3339)]
"""A timezone-aware date-time that arrives as an RFC 3339 string with an offset."""

Text = Annotated[str, Field(max_length=MAX_TEXT)]
"""An id, name or code from upstream: bounded, so one event cannot bloat a customer's state
or every alert that shows it."""


class InputEvent(BaseModel):
    """Fields common to every input event; unknown extra fields are kept."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=False)

    event_kind: ClassVar[str]
    """Short name of the event type, e.g. "login" (a class attribute, not a wire field)."""

    event_id: str = Field(min_length=1, max_length=256, description="Unique id, for idempotency.")
    customer_id: str = Field(
        min_length=1, max_length=256, description="The customer; also the Kafka key."
    )
    occurred_at: Rfc3339Datetime = Field(description="Event time, RFC 3339 with offset.")

    @field_validator("customer_id")
    @classmethod
    def _customer_id_not_padded(cls, value: str) -> str:
        """Reject customer ids with leading or trailing whitespace."""
        if value != value.strip():
            raise ValueError("customer_id must not have leading or trailing whitespace")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _occurred_at_in_range(cls, value: datetime) -> datetime:
        """Reject event times outside the plausible year range."""
        if not MIN_YEAR <= value.year <= MAX_YEAR:
            raise ValueError("occurred_at out of range")
        return value


class LoginEvent(InputEvent):
    """A user of the customer signed in (topic `crm.logins`)."""

    event_kind: ClassVar[str] = "login"

    user_id: Text
    contact_id: Text | None = None
    channel: Literal["web", "mobile", "api", "other"]


class OrderEvent(InputEvent):
    """An order changed (topic `crm.orders`); `amount` is in the order's `currency`."""

    event_kind: ClassVar[str] = "order"

    order_id: Text
    amount: Decimal = Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.")
    status: Literal["placed", "paid", "cancelled", "refunded"]


class TicketEvent(InputEvent):
    """A support ticket changed (topic `crm.tickets`)."""

    event_kind: ClassVar[str] = "ticket"

    ticket_id: Text
    kind: Literal["complaint", "incident", "question", "request", "praise"]
    severity: Literal["low", "medium", "high", "critical"]
    status: Literal["opened", "reopened", "resolved", "closed"]
    csat: int | None = Field(None, ge=1, le=5)
    nps: int | None = Field(None, ge=0, le=10)


class ContactEvent(InputEvent):
    """A contact at the customer was added, changed role or departed (topic `crm.contacts`)."""

    event_kind: ClassVar[str] = "contact"

    contact_id: Text
    name: Text | None = None
    role: Text | None = None
    is_key_contact: bool
    change: Literal["added", "role_changed", "departed"]


class AccountEvent(InputEvent):
    """Account master data; the last one per customer wins (topic `crm.accounts`)."""

    event_kind: ClassVar[str] = "account"

    name: Text
    owner: Text = Field(description="Account manager id.")
    csm: Text | None = None
    segment: Text | None = None
    industry: Text | None = None
    region: Text | None = None
    renewal_at: Rfc3339Datetime | None = None
    tier_override: Text | None = None


class TaskUpdateEvent(InputEvent):
    """A customer-success tool reports progress on a task (topic `cs.task-updates`)."""

    event_kind: ClassVar[str] = "task_update"

    task_id: Text
    status: Literal["acknowledged", "done", "dismissed"]
    by: Text | None = None
    snooze_until: Rfc3339Datetime | None = None


EVENT_KINDS: dict[str, type[InputEvent]] = {
    cls.event_kind: cls
    for cls in (LoginEvent, OrderEvent, TicketEvent, ContactEvent, AccountEvent, TaskUpdateEvent)
}
"""Input event classes by kind name ("login", "order", "ticket", …)."""
