"""Deterministic synthetic CRM traffic for ``churnguard demo`` and the benchmark.

This module is pure: it imports neither Kafka nor Faust and performs no I/O. It yields
:class:`SyntheticRecord` objects whose ``value`` is a JSON-ready ``dict`` following the input
wire contract (``event_id``, ``customer_id``, ``occurred_at`` plus the kind-specific fields);
the caller serialises and produces them, keyed by ``key`` (the customer id), to the topic that
matches ``topic_kind``.

Everything is driven by private :class:`random.Random` instances seeded from the ``seed``
argument, so the same arguments always produce the same records, in the same order.

Behaviour model (per simulated day, relative to ``start``):

* every customer: an ``account`` record at ``start`` (with a ``renewal_at`` 30-365 days
  ahead) and 1-3 key contacts ``added`` on day 0;
  logins by 2-4 users on most weekdays (1-6 a day, Poisson-like, mostly in business hours,
  rarely at weekends); an order with status ``paid`` every 20-40 days on the customer's own
  rhythm, in the customer's own currency (mostly EUR, some USD/GBP); occasional
  question/request/praise tickets (opened, then resolved 1-3 days later, sometimes with a
  CSAT/NPS score); a rare complaint (at most one per 60 days).
* ``going_quiet``: as healthy until ``trouble_day``; from then on no logins, no orders and no
  new tickets (the customer has gone silent; earlier tickets still get resolved).
* ``complaining``: as healthy, but on the 7 days from ``trouble_day`` 1-3 complaint tickets a
  day (status ``opened``, severity medium/high); each complaint is resolved 1-4 days later,
  about half of the resolutions carry CSAT 1-2 and some an NPS of 0-4.
* ``losing_champion``: as healthy; on ``trouble_day`` its first key contact gets change
  ``departed`` (``is_key_contact`` true) and that contact's user stops logging in.

:func:`generate_events` (the benchmark) runs the same model as a steady-state window: key
contacts count as known before ``start``, so it emits no ``added`` contact events.

Ids: ``event_id`` is ``{customer_id}-{kind}-{n}``; ``user_id``, ``contact_id``, ``order_id``
and ``ticket_id`` are ``{customer_id}-u{n}``, ``-c{n}``, ``-o{n}`` and ``-t{n}``. Optional
fields (``csm``, ``contact_id``, ``csat``, ``nps``) are left out rather than set to ``null``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import islice
from operator import itemgetter
from typing import Any

__all__ = [
    "DEFAULT_MIX",
    "TOPIC_KINDS",
    "CustomerPlan",
    "Persona",
    "SyntheticRecord",
    "generate",
    "generate_events",
    "plan_customers",
]

TOPIC_KINDS: tuple[str, ...] = ("account", "login", "order", "ticket", "contact")
"""The values :attr:`SyntheticRecord.topic_kind` can take."""


@dataclass(frozen=True, slots=True)
class SyntheticRecord:
    """One synthetic input event, ready to be serialised and produced.

    ``topic_kind`` is one of :data:`TOPIC_KINDS`, ``key`` is the customer id (the Kafka key),
    ``value`` is the JSON-ready event (datetimes as RFC 3339 strings with ``+00:00``, amounts
    as decimal strings with two places) and ``occurred_at`` is the same instant as
    ``value["occurred_at"]`` as an aware UTC datetime.
    """

    topic_kind: str
    key: str
    value: dict[str, Any]
    occurred_at: datetime


class Persona(StrEnum):
    """How a synthetic customer behaves over the simulated period."""

    HEALTHY = "healthy"
    GOING_QUIET = "going_quiet"
    COMPLAINING = "complaining"
    LOSING_CHAMPION = "losing_champion"


DEFAULT_MIX: Mapping[Persona, float] = {
    Persona.HEALTHY: 0.82,
    Persona.GOING_QUIET: 0.06,
    Persona.COMPLAINING: 0.06,
    Persona.LOSING_CHAMPION: 0.06,
}
"""Persona shares used by :func:`plan_customers` when no ``mix`` is given."""


@dataclass(frozen=True)
class CustomerPlan:
    """Master data and persona of one synthetic customer (the input of :func:`generate`)."""

    customer_id: str
    persona: Persona
    owner: str
    csm: str | None
    name: str
    segment: str


# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

_NAME_WORDS = (
    "Alder", "Brightwater", "Cobalt", "Driftwood", "Evergreen", "Foxglove", "Granite",
    "Harbor", "Ironbark", "Juniper", "Kestrel", "Lumen", "Meridian", "Northwind", "Oakridge",
    "Pinnacle", "Quillon", "Riverbend", "Summit", "Tidewater", "Upland", "Vantage",
    "Westfield", "Yarrow", "Zephyr", "Amberly", "Bluecrest", "Cedarline", "Dunmore", "Elmstead",
)  # fmt: skip
_NAME_NOUNS: tuple[tuple[str, str], ...] = (
    ("Logistics", "logistics"),
    ("Freight", "logistics"),
    ("Analytics", "software"),
    ("Systems", "software"),
    ("Labs", "software"),
    ("Foods", "retail"),
    ("Retail", "retail"),
    ("Robotics", "manufacturing"),
    ("Motors", "manufacturing"),
    ("Textiles", "manufacturing"),
    ("Health", "healthcare"),
    ("Pharma", "healthcare"),
    ("Finance", "financial-services"),
    ("Capital", "financial-services"),
    ("Energy", "energy"),
    ("Media", "media"),
    ("Studios", "media"),
)
_NAME_SUFFIXES = ("GmbH", "Ltd", "Inc.", "B.V.", "S.A.", "AG", "AB", "SAS", "LLC", "plc")
# (region, currency, cumulative weight): about 72 % EUR, 15 % USD, 13 % GBP.
_REGIONS: tuple[tuple[str, str, float], ...] = (
    ("DACH", "EUR", 0.30),
    ("Benelux", "EUR", 0.45),
    ("France", "EUR", 0.60),
    ("Nordics", "EUR", 0.72),
    ("UK", "GBP", 0.85),
    ("North America", "USD", 1.0),
)
_INDUSTRY_BY_WORD = dict(_NAME_NOUNS)
# Typical order size per segment, in cents (each order varies by ±30 %; clamped to 200-20,000).
_SEGMENT_ORDER_CENTS = {
    "smb": (20_000, 200_000),
    "mid-market": (150_000, 800_000),
    "enterprise": (600_000, 1_500_000),
}
_FIRST_NAMES = (
    "Anna", "Ben", "Clara", "David", "Elif", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Katja",
    "Liam", "Maya", "Noah", "Olga", "Paul", "Quentin", "Rosa", "Sami", "Tara", "Ugo", "Vera",
    "Wim", "Xenia", "Yusuf", "Zoe",
)  # fmt: skip
_LAST_NAMES = (
    "Andersen", "Bauer", "Costa", "Dubois", "Eriksson", "Fischer", "Garcia", "Hansen", "Ivanova",
    "Jansen", "Keller", "Lambert", "Moreau", "Nowak", "Okafor", "Peeters", "Quinn", "Rossi",
    "Schmidt", "Tanaka", "Urban", "Visser", "Weber", "Young", "Zimmermann",
)  # fmt: skip
_KEY_ROLES = (
    "CTO", "COO", "CFO", "Head of Operations", "VP Engineering", "IT Director",
    "Procurement Lead", "Head of Customer Service",
)  # fmt: skip

_SECONDS_PER_DAY = 86_400
_BUSINESS_START = 7 * 3600  # 07:00 after the start of the simulated day
_BUSINESS_SPAN = 12 * 3600  # ... until 19:00
_COMPLAINT_SPIKE_DAYS = 7
_COMPLAINT_COOLDOWN_DAYS = 60  # healthy behaviour: at most one complaint per 60 days
_HEALTHY_COMPLAINT_P = 1 / 120  # per day, when not cooling down
_OTHER_TICKET_P = 1 / 14  # per day: question / request / praise
_WEEKDAY_LOGIN_P = 0.92
_WEEKEND_LOGIN_P = 0.12
# Expected behaviour events per customer and day (default mix, weekends included), used to
# place the trouble day of a benchmark run inside its expected span.
_EVENTS_PER_CUSTOMER_DAY = 1.7


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------


def _normalise_mix(mix: Mapping[Persona, float] | None) -> dict[Persona, float]:
    """Return persona shares summing to 1, validating a caller-supplied mix."""
    source = DEFAULT_MIX if mix is None else mix
    shares: dict[Persona, float] = dict.fromkeys(Persona, 0.0)
    for persona, share in source.items():
        value = float(share)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"persona share for {persona!r} must be a finite number >= 0")
        shares[Persona(persona)] += value
    total = sum(shares.values())
    if total <= 0:
        raise ValueError("persona mix must have a positive total")
    return {persona: share / total for persona, share in shares.items()}


def _apportion(n: int, shares: Mapping[Persona, float]) -> dict[Persona, int]:
    """Split ``n`` customers by ``shares`` with the largest-remainder method (exact total)."""
    quotas = {persona: n * share for persona, share in shares.items()}
    counts = {persona: int(quota) for persona, quota in quotas.items()}
    left = n - sum(counts.values())
    order = sorted(shares, key=lambda p: (-(quotas[p] - counts[p]), list(Persona).index(p)))
    for persona in order[:left]:
        counts[persona] += 1
    return counts


def plan_customers(
    n: int, *, seed: int = 7, mix: Mapping[Persona, float] | None = None
) -> list[CustomerPlan]:
    """Plan ``n`` synthetic customers with ids ``cust-000001``, ``cust-000002``, ...

    Personas follow ``mix`` (default :data:`DEFAULT_MIX`: healthy 0.82, going_quiet 0.06,
    complaining 0.06, losing_champion 0.06; shares are normalised) with exact counts by the
    largest-remainder method, shuffled deterministically over the ids. Owners are
    ``am-01``..``am-20``, CSMs ``csm-01``..``csm-10`` or ``None`` for about 30 % of customers,
    and the segment is one of ``smb``, ``mid-market`` and ``enterprise``.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    counts = _apportion(n, _normalise_mix(mix))
    personas = [persona for persona in Persona for _ in range(counts[persona])]
    rng = random.Random(f"churnguard-synthetic:{seed}:plan")
    rng.shuffle(personas)
    rand = rng.random
    owners = [f"am-{i:02d}" for i in range(1, 21)]
    csms = [f"csm-{i:02d}" for i in range(1, 11)]
    plans: list[CustomerPlan] = []
    for index, persona in enumerate(personas, start=1):
        word = _NAME_WORDS[int(rand() * len(_NAME_WORDS))]
        noun = _NAME_NOUNS[int(rand() * len(_NAME_NOUNS))][0]
        suffix = _NAME_SUFFIXES[int(rand() * len(_NAME_SUFFIXES))]
        owner = owners[int(rand() * len(owners))]
        csm = None if rand() < 0.3 else csms[int(rand() * len(csms))]
        r = rand()
        segment = "smb" if r < 0.55 else "mid-market" if r < 0.87 else "enterprise"
        plans.append(
            CustomerPlan(
                customer_id=f"cust-{index:06d}",
                persona=persona,
                owner=owner,
                csm=csm,
                name=f"{word} {noun} {suffix}",
                segment=segment,
            )
        )
    return plans


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------

# Precomputed "HH:MM:" and "SS+00:00" pieces: formatting a timestamp is two look-ups.
_HH_MM = tuple(f"{m // 60:02d}:{m % 60:02d}:" for m in range(24 * 60))
_SS_TZ = tuple(f"{s:02d}+00:00" for s in range(60))


class _Customer:
    """Mutable per-customer simulation state (traits drawn once, counters, schedules)."""

    __slots__ = (
        "cid",
        "complaint_ok_day",
        "contact_seq",
        "contacts",
        "currency",
        "login_rate",
        "login_seq",
        "next_order_day",
        "order_cents",
        "order_n",
        "order_period",
        "order_seq",
        "persona",
        "region",
        "renewal_in_days",
        "ticket_n",
        "ticket_seq",
        "users",
    )

    def __init__(self, plan: CustomerPlan, rng: random.Random) -> None:
        rand = rng.random
        cid = plan.customer_id
        self.cid = cid
        self.persona = plan.persona
        n_users = 2 + int(rand() * 3)
        n_contacts = 1 + int(rand() * 3)
        first_role = int(rand() * len(_KEY_ROLES))
        # (contact_id, name, role) of the key contacts; the first one is the champion.
        self.contacts: list[tuple[str, str, str]] = [
            (
                f"{cid}-c{i}",
                f"{_FIRST_NAMES[int(rand() * len(_FIRST_NAMES))]} "
                f"{_LAST_NAMES[int(rand() * len(_LAST_NAMES))]}",
                _KEY_ROLES[(first_role + 3 * (i - 1)) % len(_KEY_ROLES)],
            )
            for i in range(1, n_contacts + 1)
        ]
        # (user_id, contact_id or None): users that are key contacts log in as such.
        self.users: list[tuple[str, str | None]] = [
            (f"{cid}-u{i}", f"{cid}-c{i}" if i <= n_contacts else None)
            for i in range(1, n_users + 1)
        ]
        self.login_rate = 1.5 + 2.0 * rand()
        self.order_period = 20 + int(rand() * 21)
        self.next_order_day = int(rand() * self.order_period)
        low, high = _SEGMENT_ORDER_CENTS[plan.segment]
        self.order_cents = low + int(rand() * (high - low))
        r = rand()
        self.region, self.currency = next((reg, cur) for reg, cur, w in _REGIONS if r < w)
        self.renewal_in_days = 30 + int(rand() * 336)
        self.complaint_ok_day = 0
        self.login_seq = 0
        self.order_seq = 0
        self.ticket_seq = 0
        self.contact_seq = 0
        self.order_n = 0
        self.ticket_n = 0


def _account_record(
    plan: CustomerPlan, customer: _Customer, at: datetime, iso: str
) -> SyntheticRecord:
    """Build a customer's account record; the industry follows the company name."""
    industry = "other"
    for word in plan.name.split():
        if word in _INDUSTRY_BY_WORD:
            industry = _INDUSTRY_BY_WORD[word]
            break
    value: dict[str, Any] = {
        "event_id": f"{plan.customer_id}-account-1",
        "customer_id": plan.customer_id,
        "occurred_at": iso,
        "name": plan.name,
        "owner": plan.owner,
    }
    if plan.csm is not None:
        value["csm"] = plan.csm
    value["segment"] = plan.segment
    value["industry"] = industry
    value["region"] = customer.region
    renewal = at.replace(hour=0, minute=0, second=0, microsecond=0)
    value["renewal_at"] = (renewal + timedelta(days=customer.renewal_in_days)).isoformat()
    return SyntheticRecord("account", plan.customer_id, value, at)


def _poisson(rand: Callable[[], float], lam: float) -> int:
    """Draw a Poisson variate (Knuth's method; fine for the small rates used here)."""
    limit = math.exp(-lam)
    k = 0
    p = rand()
    while p > limit:
        k += 1
        p *= rand()
    return k


def _check_inputs(plans: Sequence[CustomerPlan], start: datetime) -> datetime:
    """Validate ``start`` (timezone-aware) and the plans (unique ids); return ``start`` in UTC."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be a timezone-aware datetime")
    seen: set[str] = set()
    for plan in plans:
        if plan.customer_id in seen:
            raise ValueError(f"duplicate customer_id {plan.customer_id!r}")
        seen.add(plan.customer_id)
    return start.astimezone(UTC)


def _iter_records(
    plans: Sequence[CustomerPlan],
    *,
    start: datetime,
    days: int | None,
    seed: int,
    trouble_day: int,
    onboard_contacts: bool = True,
) -> Iterator[SyntheticRecord]:
    """Yield the records of ``plans`` day by day (``days=None``: until the calendar ends).

    ``start`` must already be aware UTC and customer ids unique (see :func:`_check_inputs`).
    With ``onboard_contacts`` false the key contacts are taken as known before ``start`` (no
    ``added`` events), as in a steady-state window of a long-running system.
    """
    trait_rng = random.Random(f"churnguard-synthetic:{seed}:traits")
    customers: list[_Customer] = []
    start_iso = start.isoformat()
    for plan in plans:
        customer = _Customer(plan, trait_rng)
        customers.append(customer)
        yield _account_record(plan, customer, start, start_iso)

    last_day = (datetime.max.replace(tzinfo=UTC) - start).days - 1
    end_day = last_day if days is None else min(days, last_day)
    pending: dict[int, list[_Entry]] = {}
    for day in range(end_day):
        rng = random.Random(f"churnguard-synthetic:{seed}:day:{day}")
        clock = _DayClock(start, day)
        batch = pending.pop(day, [])
        batch.extend(
            _simulate_day(customers, rng, clock, day, trouble_day, onboard_contacts, pending)
        )
        batch.sort(key=_entry_second)
        stamp = clock.stamp
        for sec, item in batch:
            if isinstance(item, SyntheticRecord):
                yield item
                continue
            cid, user_id, contact_id, channel, seq = item
            ts, iso = stamp(sec)
            if contact_id is None:
                value = {
                    "event_id": f"{cid}-login-{seq}",
                    "customer_id": cid,
                    "occurred_at": iso,
                    "user_id": user_id,
                    "channel": channel,
                }
            else:
                value = {
                    "event_id": f"{cid}-login-{seq}",
                    "customer_id": cid,
                    "occurred_at": iso,
                    "user_id": user_id,
                    "contact_id": contact_id,
                    "channel": channel,
                }
            yield SyntheticRecord("login", cid, value, ts)


# A day's work item: (second within the simulated day, a built record or a login to build).
# Logins, the bulk of the traffic, are built only when yielded, so a benchmark run that stops
# part-way through a day does not pay for the rest of it.
_LoginArgs = tuple[str, str, str | None, str, int]  # customer, user, contact?, channel, seq
_Entry = tuple[int, SyntheticRecord | _LoginArgs]
_entry_second = itemgetter(0)


class _DayClock:
    """Turn seconds within one simulated day into (aware UTC datetime, RFC 3339 string)."""

    __slots__ = ("base", "day_start", "fast", "prefix0", "prefix1")

    def __init__(self, start: datetime, day: int) -> None:
        self.day_start = start + timedelta(days=day)
        # Fast formatting (whole-second starts): seconds since the start's midnight → the date
        # prefix of that day or the next, plus precomputed time pieces.
        self.fast = start.microsecond == 0
        self.base = start.hour * 3600 + start.minute * 60 + start.second
        self.prefix0 = self.day_start.date().isoformat() + "T"
        self.prefix1 = (self.day_start + timedelta(days=1)).date().isoformat() + "T"

    def stamp(self, sec: int) -> tuple[datetime, str]:
        """The instant ``sec`` seconds into the day, as a datetime and as its string."""
        ts = self.day_start + timedelta(seconds=sec)
        if not self.fast:
            return ts, ts.isoformat()
        t = self.base + sec
        if t < _SECONDS_PER_DAY:
            return ts, self.prefix0 + _HH_MM[t // 60] + _SS_TZ[t % 60]
        t -= _SECONDS_PER_DAY
        return ts, self.prefix1 + _HH_MM[t // 60] + _SS_TZ[t % 60]


def _simulate_day(
    customers: list[_Customer],
    rng: random.Random,
    clock: _DayClock,
    day: int,
    trouble: int,
    onboard_contacts: bool,
    pending: dict[int, list[_Entry]],
) -> list[_Entry]:
    """Return one simulated day's new entries (unsorted); schedule follow-ups in ``pending``."""
    rand = rng.random
    out: list[_Entry] = []
    append = out.append
    day_start = clock.day_start
    stamp = clock.stamp
    is_weekday = day_start.weekday() < 5
    is_trouble = day >= trouble
    in_spike = trouble <= day < trouble + _COMPLAINT_SPIKE_DAYS
    quiet = Persona.GOING_QUIET
    complaining = Persona.COMPLAINING
    champion = Persona.LOSING_CHAMPION

    def business_second() -> int:
        if rand() < 0.88:
            return _BUSINESS_START + int(rand() * _BUSINESS_SPAN)
        return int(rand() * _SECONDS_PER_DAY)

    def ticket(
        c: _Customer,
        ts: datetime,
        iso: str,
        ticket_id: str,
        kind: str,
        severity: str,
        status: str,
        csat: int | None = None,
        nps: int | None = None,
    ) -> SyntheticRecord:
        c.ticket_seq += 1
        value: dict[str, Any] = {
            "event_id": f"{c.cid}-ticket-{c.ticket_seq}",
            "customer_id": c.cid,
            "occurred_at": iso,
            "ticket_id": ticket_id,
            "kind": kind,
            "severity": severity,
            "status": status,
        }
        if csat is not None:
            value["csat"] = csat
        if nps is not None:
            value["nps"] = nps
        return SyntheticRecord("ticket", c.cid, value, ts)

    def open_ticket(c: _Customer, kind: str, severity: str, status: str = "opened") -> str:
        c.ticket_n += 1
        ticket_id = f"{c.cid}-t{c.ticket_n}"
        sec = business_second()
        ts, iso = stamp(sec)
        append((sec, ticket(c, ts, iso, ticket_id, kind, severity, status)))
        return ticket_id

    def resolve_later(
        c: _Customer,
        ticket_id: str,
        kind: str,
        severity: str,
        max_days: int,
        csat: int | None,
        nps: int | None,
    ) -> None:
        target = day + 1 + int(rand() * max_days)
        sec = business_second()
        ts = day_start + timedelta(days=target - day, seconds=sec)
        rec = ticket(c, ts, ts.isoformat(), ticket_id, kind, severity, "resolved", csat, nps)
        pending.setdefault(target, []).append((sec, rec))

    def contact(c: _Customer, index: int, change: str, sec: int) -> None:
        contact_id, name, role = c.contacts[index]
        c.contact_seq += 1
        ts, iso = stamp(sec)
        value: dict[str, Any] = {
            "event_id": f"{c.cid}-contact-{c.contact_seq}",
            "customer_id": c.cid,
            "occurred_at": iso,
            "contact_id": contact_id,
            "name": name,
            "role": role,
            "is_key_contact": True,
            "change": change,
        }
        append((sec, SyntheticRecord("contact", c.cid, value, ts)))

    for c in customers:
        cid = c.cid
        persona = c.persona
        silent = is_trouble and persona is quiet

        # Key contacts: added on day 0; the champion departs on the trouble day and its user
        # stops logging in.
        if day == 0 and onboard_contacts:
            for index in range(len(c.contacts)):
                contact(c, index, "added", int(rand() * 3600))
        if day == trouble and persona is champion:
            contact(c, 0, "departed", 8 * 3600 + int(rand() * 7200))
            departed_id = c.contacts[0][0]
            c.users = [user for user in c.users if user[1] != departed_id]

        # Logins.
        if not silent:
            n_logins = 0
            if is_weekday:
                if rand() < _WEEKDAY_LOGIN_P:
                    n_logins = min(6, max(1, _poisson(rand, c.login_rate)))
            elif rand() < _WEEKEND_LOGIN_P:
                n_logins = 1 if rand() < 0.7 else 2
            users = c.users
            n_users = len(users)
            for _ in range(n_logins):
                user_id, contact_id = users[int(rand() * n_users)]
                r = rand()
                channel = (
                    "web" if r < 0.62 else "mobile" if r < 0.87 else "api" if r < 0.96 else "other"
                )
                if rand() < 0.88:
                    sec = _BUSINESS_START + int(rand() * _BUSINESS_SPAN)
                else:
                    sec = int(rand() * _SECONDS_PER_DAY)
                c.login_seq += 1
                append((sec, (cid, user_id, contact_id, channel, c.login_seq)))

        # Orders on the customer's own rhythm.
        if day == c.next_order_day:
            c.next_order_day = day + max(1, round(c.order_period * (0.8 + 0.4 * rand())))
            if not silent:
                cents = min(2_000_000, max(20_000, int(c.order_cents * (0.7 + 0.6 * rand()))))
                c.order_seq += 1
                c.order_n += 1
                sec = business_second()
                ts, iso = stamp(sec)
                value = {
                    "event_id": f"{cid}-order-{c.order_seq}",
                    "customer_id": cid,
                    "occurred_at": iso,
                    "order_id": f"{cid}-o{c.order_n}",
                    "amount": f"{cents // 100}.{cents % 100:02d}",
                    "currency": c.currency,
                    "status": "paid",
                }
                append((sec, SyntheticRecord("order", cid, value, ts)))

        if silent:
            continue

        # Complaints: a spike for the complaining persona, otherwise rare.
        if in_spike and persona is complaining:
            for _ in range(1 + int(rand() * 3)):
                severity = "high" if rand() < 0.45 else "medium"
                ticket_id = open_ticket(c, "complaint", severity)
                csat = 1 + int(rand() * 2) if rand() < 0.5 else None
                nps = int(rand() * 5) if rand() < 0.3 else None
                resolve_later(c, ticket_id, "complaint", severity, 4, csat, nps)
            c.complaint_ok_day = day + _COMPLAINT_COOLDOWN_DAYS
        elif day >= c.complaint_ok_day and rand() < _HEALTHY_COMPLAINT_P:
            c.complaint_ok_day = day + _COMPLAINT_COOLDOWN_DAYS
            severity = "medium" if rand() < 0.4 else "low"
            ticket_id = open_ticket(c, "complaint", severity)
            csat = 2 + int(rand() * 3) if rand() < 0.4 else None
            resolve_later(c, ticket_id, "complaint", severity, 3, csat, None)

        # Everyday tickets: questions and requests (resolved later), praise (closed at once).
        if rand() < _OTHER_TICKET_P:
            r = rand()
            if r < 0.1:
                c.ticket_n += 1
                csat = 5 if rand() < 0.5 else None
                nps = 9 + int(rand() * 2) if rand() < 0.3 else None
                sec = business_second()
                ts, iso = stamp(sec)
                rec = ticket(
                    c, ts, iso, f"{cid}-t{c.ticket_n}", "praise", "low", "closed", csat, nps
                )
                append((sec, rec))
            else:
                kind = "question" if r < 0.62 else "request"
                r = rand()
                severity = "low" if r < 0.6 else "medium" if r < 0.95 else "high"
                ticket_id = open_ticket(c, kind, severity)
                csat = (4 + int(rand() * 2) if rand() < 0.9 else 3) if rand() < 0.4 else None
                nps = 7 + int(rand() * 4) if rand() < 0.1 else None
                resolve_later(c, ticket_id, kind, severity, 3, csat, nps)
    return out


def generate(
    plans: Sequence[CustomerPlan],
    *,
    start: datetime,
    days: int,
    seed: int = 7,
    trouble_day: int | None = None,
) -> Iterator[SyntheticRecord]:
    """Yield all events of ``plans`` over ``days`` simulated days from ``start``, time-ordered.

    First each customer's ``account`` record at exactly ``start``, then day by day every
    customer's contacts, logins, orders and tickets at random times within
    ``[start + d days, start + d+1 days)``, sorted per day, so the whole stream is in
    non-decreasing ``occurred_at`` order and memory stays bounded by one day of traffic.
    Persona trouble (going quiet, complaint spike, key-contact departure) starts on
    ``trouble_day`` (default ``int(days * 0.4)``). ``start`` must be timezone-aware; output
    times are UTC. Same arguments → same records.
    """
    if days < 0:
        raise ValueError("days must be >= 0")
    if trouble_day is None:
        trouble_day = int(days * 0.4)
    if trouble_day < 0:
        raise ValueError("trouble_day must be >= 0")
    utc_start = _check_inputs(plans, start)
    return _iter_records(plans, start=utc_start, days=days, seed=seed, trouble_day=trouble_day)


def generate_events(
    n_customers: int, n_events: int, *, start: datetime, seed: int = 7
) -> Iterator[SyntheticRecord]:
    """Yield exactly ``n_events`` time-ordered records over ``n_customers`` customers.

    For the benchmark: the customers come from :func:`plan_customers` (default persona mix),
    every customer's account record comes first, then simulated days follow (the behaviour
    of :func:`generate`, with the trouble day at 40 % of the expected span) until
    ``n_events`` records have been yielded. The window is a steady state: key contacts are
    taken as known before ``start``, so there are no ``added`` contact events (departures
    still happen), which keeps the mix of kinds close to production (mostly logins).
    Distinct customers are ``min(n_customers, n_events)``. Lazy, bounded memory (one
    simulated day at a time); about 3 s of CPU for 300,000 events over 50,000 customers.
    """
    if n_events < 0:
        raise ValueError("n_events must be >= 0")
    if n_customers < 0 or (n_customers == 0 and n_events > 0):
        raise ValueError("n_customers must be >= 1 when events are requested")
    utc_start = _check_inputs((), start)
    if n_events == 0:
        return iter(())
    plans = plan_customers(n_customers, seed=seed)
    behaviour_events = max(0, n_events - n_customers)
    expected_days = max(1, math.ceil(behaviour_events / (n_customers * _EVENTS_PER_CUSTOMER_DAY)))
    records = _iter_records(
        plans,
        start=utc_start,
        days=None,
        seed=seed,
        trouble_day=int(expected_days * 0.4),
        onboard_contacts=False,
    )
    return islice(records, n_events)
