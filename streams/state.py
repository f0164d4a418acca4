"""Per-customer rolling state: a pure, versioned, compact model and how events change it.

Times are epoch seconds (floats); days are whole UTC days since the epoch. Everything a
feature needs is here, bounded in size: daily buckets over a horizon, monthly order buckets
for 13 months, the times of the last 16 orders, the last 3 CSAT scores, and a bounded list of
recent ``event_id``s for idempotency.
"""

from __future__ import annotations

from bisect import insort
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from itertools import repeat
from typing import Any, Final

import orjson

from schemas import (
    AccountEvent,
    ContactEvent,
    InputEvent,
    LoginEvent,
    OrderEvent,
    TaskUpdateEvent,
    TicketEvent,
)

STATE_VERSION: Final = 1
DAY: Final = 86400.0
Number = int | float
"""A bucket's content: a count (int) or money (float). Annotated as such, not as ``float``,
because the compiled core (docs/performance.md) would turn an int it holds as ``float`` into
a float, and that shows in the state's bytes and in the features' CEL types."""
MONTHS_KEPT: Final = 13
MAX_OPEN_TICKETS: Final = 256
MAX_TRACKED_ORDERS: Final = 128
MAX_DEPARTURES: Final = 32
MAX_ORDER_TIMES: Final = 16
CSAT_KEPT: Final = 3
DEPARTURES_KEPT_S: Final = 90 * DAY

ACCOUNT_FIELDS: Final = ("name", "owner", "csm", "segment", "industry", "region", "tier_override")
_ACCOUNT_ORDER: Final = tuple(f for f in AccountEvent.model_fields if f in ACCOUNT_FIELDS)
"""The account fields in the order of the event model (the order of the state's bytes)."""


def day_of(ts: float) -> int:
    """UTC day number of an epoch timestamp."""
    return int(ts // DAY)


def month_of(ts: float) -> int:
    """Month number (year * 12 + month - 1) of an epoch timestamp, UTC."""
    days = day_of(ts)
    # civil-from-days (Howard Hinnant), avoids datetime objects on the hot path
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    m = mp + 3 if mp < 10 else mp - 9
    return (y + (m <= 2)) * 12 + m - 1


def month_start(month: int) -> float:
    """Epoch timestamp of the first instant (UTC) of a :func:`month_of` month number."""
    # days-from-civil (Howard Hinnant) for the 1st of the month
    y, m = divmod(month, 12)
    m += 1
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return (era * 146097 + doe - 719468) * DAY


def _bump(buckets: dict[int, Number], slot: int, by: Number) -> None:
    buckets[slot] = buckets.get(slot, 0) + by


def window_sum(buckets: dict[int, Number], first: int, last: int) -> Number:
    """Sum of the buckets with ``first <= slot <= last``."""
    if last - first < len(buckets):  # a short window over many buckets: look slots up
        return sum(map(buckets.get, range(first, last + 1), repeat(0.0)))
    return sum(v for k, v in buckets.items() if first <= k <= last)


@dataclass(slots=True)
class CustomerState:
    """Everything churnguard remembers about one customer."""

    customer_id: str
    account: dict[str, str] = field(default_factory=dict)
    account_at: float | None = None
    first_seen_at: float | None = None
    last_event_at: float | None = None
    last_login_at: float | None = None
    last_order_at: float | None = None
    logins: dict[int, Number] = field(default_factory=dict)
    complaints: dict[int, Number] = field(default_factory=dict)
    tickets: dict[int, Number] = field(default_factory=dict)
    orders: dict[int, Number] = field(default_factory=dict)
    order_value: dict[int, Number] = field(default_factory=dict)
    monthly_orders: dict[int, Number] = field(default_factory=dict)
    monthly_value: dict[int, Number] = field(default_factory=dict)
    # order_id → (status, when it was counted, when it was paid)
    order_status: dict[str, tuple[str, float | None, float | None]] = field(default_factory=dict)
    open_tickets: dict[str, str] = field(default_factory=dict)
    key_contacts: dict[str, str] = field(default_factory=dict)
    departures: list[tuple[float, str, str]] = field(default_factory=list)
    last_csat: int | None = None
    last_nps: int | None = None
    # event times of the last MAX_ORDER_TIMES counted orders, ascending
    order_times: list[float] = field(default_factory=list)
    # the last CSAT_KEPT CSAT scores, oldest first (arrival order, like last_csat)
    csat_recent: list[int] = field(default_factory=list)
    # the account's renewal date (epoch seconds), from the newest account event
    renewal_at: float | None = None
    # purchase history in lifetimes' terms, unbounded in time, constant in size: first and
    # last purchase day, distinct purchase days, value paid on the first day and on the others
    rfm_first_day: int | None = None
    rfm_last_day: int | None = None
    rfm_days: int = 0
    rfm_first_value: float = 0.0
    rfm_repeat_value: float = 0.0
    # the scoring step's last results (tier, stage, health, RFM scores, CLV, snapshot marks)
    scores: dict[str, Any] = field(default_factory=dict)
    recent_ids: deque[str] = field(default_factory=deque)
    recent_set: set[str] = field(default_factory=set)
    evaluated_at: float | None = None
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_fired: dict[str, float] = field(default_factory=dict)

    # -- idempotency -----------------------------------------------------------------
    def seen(self, event_id: str) -> bool:
        """True if ``event_id`` was applied recently (within the bounded memory)."""
        return event_id in self.recent_set

    def remember(self, event_id: str, capacity: int) -> None:
        """Record ``event_id`` as applied, forgetting the oldest beyond ``capacity``."""
        self.recent_ids.append(event_id)
        self.recent_set.add(event_id)
        while len(self.recent_ids) > capacity:
            self.recent_set.discard(self.recent_ids.popleft())

    # -- serialisation ---------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Compact, versioned JSON encoding for the table and its changelog."""
        return orjson.dumps(
            {
                "v": STATE_VERSION,
                "id": self.customer_id,
                "acct": self.account,
                "acct_at": self.account_at,
                "first": self.first_seen_at,
                "last": self.last_event_at,
                "login_at": self.last_login_at,
                "order_at": self.last_order_at,
                "lg": self.logins,
                "cp": self.complaints,
                "tk": self.tickets,
                "od": self.orders,
                "ov": self.order_value,
                "mo": self.monthly_orders,
                "mv": self.monthly_value,
                "os": self.order_status,
                "ot": self.open_tickets,
                "kc": self.key_contacts,
                "dep": self.departures,
                "csat": self.last_csat,
                "nps": self.last_nps,
                "odt": self.order_times,
                "csr": self.csat_recent,
                "ren": self.renewal_at,
                "rfm": [
                    self.rfm_first_day,
                    self.rfm_last_day,
                    self.rfm_days,
                    self.rfm_first_value,
                    self.rfm_repeat_value,
                ],
                "sc": self.scores,
                "ids": list(self.recent_ids),
                "eval": self.evaluated_at,
                "al": self.alerts,
                "lf": self.last_fired,
            },
            option=orjson.OPT_NON_STR_KEYS,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> CustomerState:
        """Decode :meth:`to_bytes` output; anything else (an unknown version, a missing or
        mistyped field) raises ValueError.

        States written before ``order_times``, ``csat_recent``, ``renewal_at`` and ``scores``
        existed decode with those empty (``renewal_at`` from the account's ``renewal_at``
        string); their purchase history is seeded from what they remember (:func:`_seed_rfm`).
        """
        d = orjson.loads(raw)
        version = d.get("v") if isinstance(d, dict) else None
        if version != STATE_VERSION:
            raise ValueError(f"unsupported customer state version {version!r}")
        try:
            return cls._from_document(d)
        # TypeError also where the compiled core checks a field's type against its annotation
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"unreadable customer state: {exc!r}") from exc

    @classmethod
    def _from_document(cls, d: dict[str, Any]) -> CustomerState:
        def ints(m: dict[str, Number]) -> dict[int, Number]:
            return {int(k): v for k, v in m.items()}

        ids = deque(d["ids"])
        rfm = d["rfm"] if "rfm" in d else _seed_rfm(d)
        if "ren" in d:
            renewal_at = d["ren"]
        else:
            iso = d["acct"].get("renewal_at")
            renewal_at = datetime.fromisoformat(iso).timestamp() if iso else None
        return cls(
            customer_id=d["id"],
            account=d["acct"],
            account_at=d["acct_at"],
            first_seen_at=d["first"],
            last_event_at=d["last"],
            last_login_at=d["login_at"],
            last_order_at=d["order_at"],
            logins=ints(d["lg"]),
            complaints=ints(d["cp"]),
            tickets=ints(d["tk"]),
            orders=ints(d["od"]),
            order_value=ints(d["ov"]),
            monthly_orders=ints(d["mo"]),
            monthly_value=ints(d["mv"]),
            order_status={k: (v[0], v[1], v[2]) for k, v in d["os"].items()},
            open_tickets=d["ot"],
            key_contacts=d["kc"],
            departures=[(x[0], x[1], x[2]) for x in d["dep"]],
            last_csat=d["csat"],
            last_nps=d["nps"],
            order_times=d.get("odt", []),
            csat_recent=d.get("csr", []),
            renewal_at=renewal_at,
            rfm_first_day=rfm[0],
            rfm_last_day=rfm[1],
            rfm_days=rfm[2],
            rfm_first_value=rfm[3],
            rfm_repeat_value=rfm[4],
            scores=d.get("sc", {}),
            recent_ids=ids,
            recent_set=set(ids),
            evaluated_at=d["eval"],
            alerts=d["al"],
            last_fired=d["lf"],
        )


def _seed_rfm(d: dict[str, Any]) -> list[Any]:
    """Purchase history for a state written before it was kept: from what that state has
    (the last 16 order times and the daily buckets of the horizon), so older days are lost."""
    days = sorted(
        {day_of(t) for t in d.get("odt", [])} | {int(k) for k, v in d["od"].items() if v > 0}
    )
    if not days:
        return [None, None, 0, 0.0, 0.0]
    value = {int(k): v for k, v in d["ov"].items()}
    repeat = sum(value.get(day, 0.0) for day in days[1:])
    return [days[0], days[-1], len(days), value.get(days[0], 0.0), repeat]


@dataclass(frozen=True, slots=True)
class StateConfig:
    """The knobs of state keeping."""

    horizon_days: int = 120
    recent_event_ids: int = 512
    currency_rates: dict[str, float] = field(default_factory=lambda: {"EUR": 1.0})


def apply_event(
    state: CustomerState, event: InputEvent, config: StateConfig, ts: float | None = None
) -> bool:
    """Fold one event into ``state``; False (and no change) if its event_id was seen.

    ``ts``: the event's time as epoch seconds, when the caller has it already.
    """
    if state.seen(event.event_id):
        return False
    if ts is None:
        ts = event.occurred_at.timestamp()
    state.remember(event.event_id, config.recent_event_ids)
    if state.first_seen_at is None or ts < state.first_seen_at:
        state.first_seen_at = ts
    if state.last_event_at is None or ts > state.last_event_at:
        state.last_event_at = ts
    day = day_of(ts)
    if isinstance(event, LoginEvent):
        _bump(state.logins, day, 1)
        if state.last_login_at is None or ts > state.last_login_at:
            state.last_login_at = ts
    elif isinstance(event, OrderEvent):
        _apply_order(state, event, ts, config)
    elif isinstance(event, TicketEvent):
        _apply_ticket(state, event, day)
    elif isinstance(event, ContactEvent):
        _apply_contact(state, event, ts)
    elif isinstance(event, AccountEvent):
        if state.account_at is None or ts >= state.account_at:
            state.account_at = ts
            account = {}
            for name in _ACCOUNT_ORDER:  # read one by one: model_dump costs ~10x as much
                value = getattr(event, name)
                if value is not None:
                    account[name] = str(value)
            state.account = account
            state.renewal_at = None
            if event.renewal_at is not None:
                state.account["renewal_at"] = event.renewal_at.isoformat()
                state.renewal_at = event.renewal_at.timestamp()
    elif isinstance(event, TaskUpdateEvent):
        pass  # task progress is handled by the lifecycle (a later issue); kept for dedup
    prune(state, state.last_event_at or ts, config.horizon_days)
    return True


def _apply_order(state: CustomerState, event: OrderEvent, ts: float, config: StateConfig) -> None:
    rate = config.currency_rates.get(event.currency)
    value = float(event.amount * Decimal(str(rate))) if rate is not None else 0.0
    before, counted_at, paid_at = state.order_status.get(event.order_id, (None, None, None))
    after = event.status
    uncounted: int | None = None
    if before is None and after in ("placed", "paid"):
        counted_at = ts
        _count_purchase_day(state, day_of(ts))
        _bump(state.orders, day_of(ts), 1)
        _bump(state.monthly_orders, month_of(ts), 1)
        if state.last_order_at is None or ts > state.last_order_at:
            state.last_order_at = ts
        insort(state.order_times, ts)
        del state.order_times[:-MAX_ORDER_TIMES]
    elif before in ("placed", "paid") and after == "cancelled" and counted_at is not None:
        # undo the count where it was made (unless that bucket is already pruned)
        _unbump(state.orders, day_of(counted_at), 1)
        _unbump(state.monthly_orders, month_of(counted_at), 1)
        if counted_at in state.order_times:
            state.order_times.remove(counted_at)
        if state.orders.get(day_of(counted_at), 1) <= 0:  # its day has no order left
            uncounted = day_of(counted_at)
    if after == "paid" and before != "paid":
        paid_at = ts
        _bump(state.order_value, day_of(ts), value)
        _bump(state.monthly_value, month_of(ts), value)
        _add_purchase_value(state, counted_at, value)
    elif after in ("refunded", "cancelled") and before == "paid" and paid_at is not None:
        _unbump(state.order_value, day_of(paid_at), value)
        _unbump(state.monthly_value, month_of(paid_at), value)
        _add_purchase_value(state, counted_at, -value)
    if uncounted is not None:  # after the value is taken off the day
        _uncount_purchase_day(state, uncounted)
    state.order_status[event.order_id] = (after, counted_at, paid_at)
    while len(state.order_status) > MAX_TRACKED_ORDERS:
        del state.order_status[next(iter(state.order_status))]


def _count_purchase_day(state: CustomerState, day: int) -> None:
    """Count ``day`` as a purchase day unless it already is one (lifetimes' frequency unit).

    Days are told apart exactly within the horizon (the daily order buckets) and at the first
    and last purchase day; an order later than the horizon for an older day counts as new.
    """
    first, last = state.rfm_first_day, state.rfm_last_day
    if first is None or last is None:
        state.rfm_first_day = state.rfm_last_day = day
        state.rfm_days = 1
        return
    if day in (first, last) or state.orders.get(day, 0) > 0:
        return
    state.rfm_days += 1
    if day < first:  # the old first day becomes a repeat purchase day
        state.rfm_repeat_value += state.rfm_first_value
        state.rfm_first_value = 0.0
        state.rfm_first_day = day
    elif day > last:
        state.rfm_last_day = day


def _uncount_purchase_day(state: CustomerState, day: int) -> None:
    """Undo a purchase day whose only orders were cancelled (days known from the buckets)."""
    if state.rfm_days <= 1:
        state.rfm_first_day = state.rfm_last_day = None
        state.rfm_days = 0
        state.rfm_first_value = state.rfm_repeat_value = 0.0
        return
    state.rfm_days -= 1
    remaining = sorted({day_of(t) for t in state.order_times} - {day})
    if day == state.rfm_first_day:
        later = [d for d in remaining if d > day]
        first = later[0] if later else state.rfm_last_day
        moved = state.order_value.get(first, 0.0) if first is not None else 0.0
        state.rfm_repeat_value = max(0.0, state.rfm_repeat_value + state.rfm_first_value - moved)
        state.rfm_first_value = moved
        state.rfm_first_day = first
    elif day == state.rfm_last_day:
        earlier = [d for d in remaining if d < day]
        state.rfm_last_day = earlier[-1] if earlier else state.rfm_first_day


def _add_purchase_value(state: CustomerState, counted_at: float | None, value: float) -> None:
    """Book a paid (or, negative, refunded) value on the order's purchase day."""
    if counted_at is not None and day_of(counted_at) == state.rfm_first_day:
        state.rfm_first_value = max(0.0, state.rfm_first_value + value)
    else:
        state.rfm_repeat_value = max(0.0, state.rfm_repeat_value + value)


def _unbump(buckets: dict[int, Number], slot: int, by: Number) -> None:
    if slot in buckets:
        buckets[slot] = max(0.0, buckets[slot] - by)


def _apply_ticket(state: CustomerState, event: TicketEvent, day: int) -> None:
    known = event.ticket_id in state.open_tickets
    if event.status in ("opened", "reopened"):
        if not known:
            _bump(state.tickets, day, 1)
            if event.kind == "complaint":
                _bump(state.complaints, day, 1)
        state.open_tickets[event.ticket_id] = event.severity
        while len(state.open_tickets) > MAX_OPEN_TICKETS:
            del state.open_tickets[next(iter(state.open_tickets))]
    else:
        state.open_tickets.pop(event.ticket_id, None)
    if event.csat is not None:
        state.last_csat = event.csat
        state.csat_recent.append(event.csat)
        del state.csat_recent[:-CSAT_KEPT]
    if event.nps is not None:
        state.last_nps = event.nps


def _apply_contact(state: CustomerState, event: ContactEvent, ts: float) -> None:
    label = event.name or event.contact_id
    if event.change == "departed":
        was_key = state.key_contacts.pop(event.contact_id, None) is not None
        if was_key or event.is_key_contact:
            state.departures.append((ts, event.contact_id, label))
            state.departures.sort()
            del state.departures[:-MAX_DEPARTURES]
    elif event.is_key_contact:
        state.key_contacts[event.contact_id] = label
    else:
        state.key_contacts.pop(event.contact_id, None)


def prune(state: CustomerState, now: float, horizon_days: int) -> None:
    """Drop buckets older than the horizon (13 months for monthly buckets)."""
    first_day = day_of(now) - horizon_days
    for buckets in (
        state.logins,
        state.complaints,
        state.tickets,
        state.orders,
        state.order_value,
    ):
        if buckets and min(buckets) < first_day:  # mostly nothing to drop
            for k in [k for k in buckets if k < first_day]:
                del buckets[k]
    first_month = month_of(now) - MONTHS_KEPT + 1
    for monthly in (state.monthly_orders, state.monthly_value):
        if monthly and min(monthly) < first_month:
            for k in [k for k in monthly if k < first_month]:
                del monthly[k]
    cutoff = now - DEPARTURES_KEPT_S
    if state.departures and state.departures[0][0] < cutoff:
        state.departures = [d for d in state.departures if d[0] >= cutoff]
