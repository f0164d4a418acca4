"""Promtool-style unit tests for rule packs: ``churnguard rules test FILE...``.

A test file (YAML, format in docs/rules-testing.md) names rule packs, a start time, account
records and tests. Each test feeds synthetic input events, written in a short notation
(``logins: every 1d from 0d to 20d``), through the pure engine in event time, and at each
``eval_at`` point compares the alerts firing and the tasks open with the expectation.
Everything runs in process: no broker, no Faust, no wall clock (emitted times are the
simulated time), so a run is deterministic.

Public API: :func:`run_test_files` (one :class:`TestFileReport` per file, each with ``ok``)
and :func:`format_report` (the text to print). The caller decides the exit status.
"""

from __future__ import annotations

import difflib
import re
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rules.engine import Engine, EngineConfig, Result
from rules.loader import RulePackError, RuleSet, load_rules
from schemas import (
    AccountEvent,
    AlertEvent,
    ContactEvent,
    InputEvent,
    LoginEvent,
    OrderEvent,
    TaskEvent,
    TaskUpdateEvent,
    TicketEvent,
)
from streams.state import CustomerState

__all__ = [
    "Draft",
    "EvalFailure",
    "Mismatch",
    "NotationError",
    "TestFileReport",
    "TestReport",
    "format_offset",
    "format_report",
    "parse_notation",
    "parse_offset",
    "run_test_file",
    "run_test_files",
]

MAX_EVENTS_PER_NOTATION = 10_000
INPUT_KINDS = ("logins", "tickets", "contacts", "orders", "task_updates")

# -- time notation ------------------------------------------------------------------------------
_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_OFFSET = re.compile(r"^([+-]?)((?:\d+(?:\.\d+)?[wdhms])+)$")
_OFFSET_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")


class NotationError(ValueError):
    """An input notation, offset or duration that cannot be read."""


def parse_offset(text: str | int | float) -> float:
    """Seconds in ``14d``, ``36h``, ``90m``, ``1d12h``, ``-2w`` or ``0`` (from the start)."""
    if isinstance(text, int | float) and not isinstance(text, bool) and text == 0:
        return 0.0
    if not isinstance(text, str):
        raise NotationError(f"bad time {text!r}: write a number and a unit, like 14d or 36h")
    value = text.strip()
    if value in ("0", "+0", "-0"):
        return 0.0
    match = _OFFSET.match(value)
    if not match:
        raise NotationError(
            f"bad time {text!r}: write a number and a unit (w, d, h, m, s), like 14d, 36h, "
            "90m or 1d12h"
        )
    seconds = sum(float(n) * _UNITS[u] for n, u in _OFFSET_PART.findall(match.group(2)))
    return -seconds if match.group(1) == "-" else seconds


def _parse_duration(text: str) -> float:
    seconds = parse_offset(text)
    if seconds <= 0:
        raise NotationError(f"bad duration {text!r}: must be more than 0, like 1d")
    return seconds


def format_offset(seconds: float) -> str:
    """``1d12h`` for 129600.0: the inverse of :func:`parse_offset` (whole seconds)."""
    sign = "-" if seconds < 0 else ""
    left = round(abs(seconds))
    if left == 0:
        return "0d"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = int(_UNITS[unit])
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return sign + "".join(parts)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- input notation -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Draft:
    """One input event before it has an id: its kind, offset from the start and fields.

    ``kind`` is an event kind (``login``, ``ticket``, ``contact``, ``order``,
    ``task_update``, ``account``). Task updates carry ``rule`` (and ``escalation``) instead
    of a task id, resolved when the update is applied; times in ``fields`` ending in ``_at``
    are offsets too.
    """

    kind: str
    at: float
    fields: dict[str, Any]

    def to_event(
        self, customer_id: str, event_id: str, start: datetime, task_id: str | None = None
    ) -> InputEvent:
        """The input event for ``customer_id`` (task updates need the resolved ``task_id``)."""
        common: dict[str, Any] = {
            "event_id": event_id,
            "customer_id": customer_id,
            "occurred_at": start + timedelta(seconds=self.at),
        }
        f = self.fields
        if self.kind == "login":
            return LoginEvent(**common, user_id=f["user_id"], channel=f["channel"])
        if self.kind == "ticket":
            return TicketEvent(
                **common,
                ticket_id=f["ticket_id"] or event_id,
                kind=f["kind"],
                severity=f["severity"],
                status=f["status"],
                csat=f["csat"],
                nps=f["nps"],
            )
        if self.kind == "contact":
            return ContactEvent(
                **common,
                contact_id=f["contact_id"],
                name=f["name"],
                is_key_contact=f["is_key_contact"],
                change=f["change"],
            )
        if self.kind == "order":
            return OrderEvent(
                **common,
                order_id=f["order_id"] or event_id,
                amount=f["amount"],
                currency=f["currency"],
                status=f["status"],
            )
        if self.kind == "task_update":
            if task_id is None:
                raise ValueError("a task update needs the task id it refers to")
            until: datetime | None = None
            if f["snooze"] is not None:
                until = common["occurred_at"] + timedelta(seconds=f["snooze"])
            elif f["snooze_until"] is not None:
                until = start + timedelta(seconds=f["snooze_until"])
            return TaskUpdateEvent(
                **common, task_id=task_id, status=f["status"], by=f["by"], snooze_until=until
            )
        if self.kind == "account":
            record = dict(f)
            renewal = record.pop("renewal_at", None)
            return AccountEvent(
                **common,
                name=record.pop("name", None) or customer_id,
                owner=record.pop("owner", None) or "",
                renewal_at=_absolute(renewal, start),
                **record,
            )
        raise ValueError(f"unknown draft kind {self.kind!r}")


def _absolute(value: float | datetime | None, start: datetime) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return start + timedelta(seconds=value)


@dataclass(frozen=True)
class _Token:
    text: str
    quoted: bool = False


_TOKEN = re.compile(r"\"([^\"]*)\"|'([^']*)'|(,)|([^\s,\"']+)")

_USAGE = {
    "logins": "[web|mobile|api|other] TIMES [by USER]",
    "tickets": "[KIND] [SEVERITY] [STATUS] TIMES [id ID] [csat 1-5] [nps 0-10]",
    "contacts": "[key] NAME added|role_changed|departed TIMES [id ID]",
    "orders": "[placed|paid|cancelled|refunded] [AMOUNT CURRENCY] TIMES [id ID]",
    "task_updates": "acknowledged|done|dismissed RULE [escalation] TIMES "
    "[snooze DURATION | snooze until TIME] [by PERSON]",
}
_CHANNELS = ("web", "mobile", "api", "other")
_TICKET_KINDS = ("complaint", "incident", "question", "request", "praise")
_TICKET_SEVERITIES = ("low", "medium", "high", "critical")
_TICKET_STATUSES = ("opened", "reopened", "resolved", "closed")
_CONTACT_CHANGES = ("added", "role_changed", "departed")
_ORDER_STATUSES = ("placed", "paid", "cancelled", "refunded")
_TASK_STATUSES = ("acknowledged", "done", "dismissed")
_OPTIONS = {
    "logins": ("by",),
    "tickets": ("id", "csat", "nps"),
    "contacts": ("id",),
    "orders": ("id",),
    "task_updates": ("by", "snooze"),
}


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        gap = text[pos : match.start()]
        if gap.strip():
            raise NotationError(f"unbalanced quote in {text!r}")
        pos = match.end()
        if match.group(1) is not None or match.group(2) is not None:
            out.append(
                _Token(match.group(1) if match.group(1) is not None else match.group(2), True)
            )
        else:
            out.append(_Token(match.group(3) or match.group(4)))
    if text[pos:].strip():
        raise NotationError(f"unbalanced quote in {text!r}")
    return out


def _is_offset(token: _Token) -> bool:
    return not token.quoted and (token.text == "0" or bool(_OFFSET.match(token.text)))


class _Reader:
    """Splits a notation into bare words, one schedule of times and keyword options."""

    def __init__(self, kind: str, text: str) -> None:
        self.kind, self.text = kind, text
        self.tokens = _tokens(text)
        self.pos = 0
        self.words: list[_Token] = []
        self.times: list[float] | None = None
        self.options: dict[str, Any] = {}
        self._read()

    def fail(self, message: str) -> NotationError:
        return NotationError(f"{message} in {self.text!r} (usage: {_USAGE[self.kind]})")

    def _next(self, what: str) -> _Token:
        if self.pos >= len(self.tokens):
            raise self.fail(f"expected {what} at the end")
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def _time(self, what: str = "a time like 14d") -> float:
        token = self._next(what)
        if not _is_offset(token):
            raise self.fail(f"expected {what}, got {token.text!r}")
        return parse_offset(token.text)

    def _read(self) -> None:
        while self.pos < len(self.tokens):
            token = self.tokens[self.pos]
            self.pos += 1
            word = token.text if not token.quoted else None
            if word in ("at", "every"):
                if self.times is not None:
                    raise self.fail("more than one schedule (use a list for several)")
                self.times = self._at() if word == "at" else self._every()
            elif word in _OPTIONS[self.kind]:
                if word in self.options:
                    raise self.fail(f"{word!r} given twice")
                self.options[word] = self._option(word)
            elif word == ",":
                raise self.fail("unexpected ','")
            else:
                self.words.append(token)
        if self.times is None:
            raise self.fail("no time given: add 'at 14d' or 'every 1d from 0d to 20d'")

    def _at(self) -> list[float]:
        times = [self._time()]
        while self.pos < len(self.tokens):
            token = self.tokens[self.pos]
            if token.text == "," and not token.quoted:
                self.pos += 1
                times.append(self._time("a time after ','"))
            elif _is_offset(token):
                self.pos += 1
                times.append(parse_offset(token.text))
            else:
                break
        return times

    def _every(self) -> list[float]:
        token = self._next("a duration after 'every'")
        if not _is_offset(token):
            raise self.fail(f"expected a duration after 'every', got {token.text!r}")
        step = _parse_duration(token.text)
        self._keyword("from")
        first = self._time("a time after 'from'")
        self._keyword("to")
        last = self._time("a time after 'to'")
        if last < first:
            raise self.fail("'to' is before 'from'")
        count = int((last - first) // step) + 1
        if count > MAX_EVENTS_PER_NOTATION:
            raise self.fail(f"{count} events, more than {MAX_EVENTS_PER_NOTATION}")
        return [first + i * step for i in range(count)]

    def _keyword(self, keyword: str) -> None:
        got = self._next(f"'{keyword}'")
        if got.text != keyword or got.quoted:
            raise self.fail(f"expected '{keyword}', got {got.text!r}")

    def _option(self, word: str) -> Any:
        if word == "snooze":
            token = self._next("a duration or 'until TIME' after 'snooze'")
            if token.text == "until" and not token.quoted:
                return ("until", self._time("a time after 'snooze until'"))
            if not _is_offset(token):
                raise self.fail(f"expected a duration after 'snooze', got {token.text!r}")
            return ("for", _parse_duration(token.text))
        token = self._next(f"a value after {word!r}")
        if token.text == "," and not token.quoted:
            raise self.fail(f"expected a value after {word!r}")
        if word in ("csat", "nps"):
            low, high = (1, 5) if word == "csat" else (0, 10)
            if not token.text.isdigit() or not low <= int(token.text) <= high:
                raise self.fail(f"{word} must be a whole number from {low} to {high}")
            return int(token.text)
        return token.text

    def pick(self, choices: Sequence[str], what: str) -> str | None:
        """The one bare word out of ``choices`` (removed from the words), or None."""
        found = [w for w in self.words if not w.quoted and w.text in choices]
        if len(found) > 1:
            raise self.fail(f"more than one {what}: {', '.join(w.text for w in found)}")
        if not found:
            return None
        self.words.remove(found[0])
        return found[0].text

    def done(self) -> None:
        if self.words:
            raise self.fail(f"unexpected {', '.join(repr(w.text) for w in self.words)}")


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "contact"


def parse_notation(kind: str, text: str) -> list[Draft]:
    """The events one input line describes, in the order written (not yet sorted).

    ``kind`` is a key of a test's input list: logins, tickets, contacts, orders or
    task_updates. Ids left open (``ticket_id``, ``order_id`` without ``id``) are None: the
    event gets the event id. Raises NotationError with the usage on a bad line.
    """
    if kind not in _USAGE:
        raise NotationError(f"unknown input kind {kind!r}")
    if not isinstance(text, str) or not text.strip():
        raise NotationError(f"{kind} needs a line like: {_USAGE[kind]}")
    r = _Reader(kind, text)
    assert r.times is not None
    fields: dict[str, Any]
    if kind == "logins":
        fields = {
            "channel": r.pick(_CHANNELS, "channel") or "web",
            "user_id": r.options.get("by", "user-1"),
        }
        draft_kind = "login"
    elif kind == "tickets":
        fields = {
            "kind": r.pick(_TICKET_KINDS, "ticket kind") or "question",
            "severity": r.pick(_TICKET_SEVERITIES, "severity") or "medium",
            "status": r.pick(_TICKET_STATUSES, "status") or "opened",
            "ticket_id": r.options.get("id"),
            "csat": r.options.get("csat"),
            "nps": r.options.get("nps"),
        }
        if fields["status"] != "opened" and fields["ticket_id"] is None:
            raise r.fail(f"a {fields['status']} ticket needs the id of the ticket: id T1")
        draft_kind = "ticket"
    elif kind == "contacts":
        is_key = r.pick(("key",), "'key'") is not None
        change = r.pick(_CONTACT_CHANGES, "change")
        if change is None:
            raise r.fail("say what happened: added, role_changed or departed")
        if len(r.words) != 1:
            raise r.fail("expected one contact name (quote a name with spaces)")
        name = r.words.pop().text
        fields = {
            "name": name,
            "change": change,
            "is_key_contact": is_key,
            "contact_id": r.options.get("id", _slug(name)),
        }
        draft_kind = "contact"
    elif kind == "orders":
        order_status = r.pick(_ORDER_STATUSES, "order status") or "paid"
        amount, currency = Decimal(100), "EUR"
        numbers = [w for w in r.words if not w.quoted and re.fullmatch(r"\d+(\.\d+)?", w.text)]
        if len(numbers) > 1:
            raise r.fail("more than one amount")
        if numbers:
            at = r.words.index(numbers[0])
            following = r.words[at + 1] if at + 1 < len(r.words) else None
            if following is None or not re.fullmatch(r"[A-Z]{3}", following.text):
                raise r.fail("an amount needs a currency code after it, like 120 EUR")
            amount = Decimal(numbers[0].text)
            currency = following.text
            del r.words[at : at + 2]
        fields = {
            "status": order_status,
            "amount": amount,
            "currency": currency,
            "order_id": r.options.get("id"),
        }
        if order_status in ("cancelled", "refunded") and fields["order_id"] is None:
            raise r.fail(f"a {order_status} order needs the id of the order: id O1")
        draft_kind = "order"
    else:
        status = r.pick(_TASK_STATUSES, "status")
        if status is None:
            raise r.fail("say what happened: acknowledged, done or dismissed")
        escalation = r.pick(("escalation",), "'escalation'") is not None
        if len(r.words) != 1 or r.words[0].quoted:
            raise r.fail("expected the id of the rule whose task this is")
        snooze = r.options.get("snooze")
        if snooze is not None and status != "dismissed":
            raise r.fail("only a dismissed task can snooze its rule")
        fields = {
            "status": status,
            "rule": r.words.pop().text,
            "escalation": escalation,
            "snooze": snooze[1] if snooze and snooze[0] == "for" else None,
            "snooze_until": snooze[1] if snooze and snooze[0] == "until" else None,
            "by": r.options.get("by"),
        }
        draft_kind = "task_update"
    r.done()
    return [Draft(draft_kind, t, dict(fields)) for t in r.times]


# -- the file format (pydantic) ------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, frozen=True)


class AccountRecord(_Strict):
    """An account record (crm.accounts fields); renewal_at is an offset or a date."""

    name: str | None = None
    owner: str | None = None
    csm: str | None = None
    segment: str | None = None
    industry: str | None = None
    region: str | None = None
    tier_override: str | None = None
    renewal_at: str | datetime | date | None = None


class AccountChange(AccountRecord):
    """A change to a customer's account at ``at``; a key set to null removes that field."""

    at: str = "0d"


class InputItem(_Strict):
    """One line of a customer's input: exactly one of the keys."""

    logins: str | list[str] | None = None
    tickets: str | list[str] | None = None
    contacts: str | list[str] | None = None
    orders: str | list[str] | None = None
    task_updates: str | list[str] | None = None
    account: AccountChange | None = None

    def given(self) -> list[str]:
        """The keys this item sets."""
        return [k for k in (*INPUT_KINDS, "account") if k in self.model_fields_set]


class AlertExpectation(_Strict):
    """An alert expected to be firing; unset fields match anything."""

    customer: str
    rule: str
    severity: Literal["info", "low", "medium", "high", "critical"] | None = None
    summary: str | None = Field(None, description="a substring of the summary")
    labels: dict[str, str] | None = Field(None, description="these labels (others may exist)")
    fired_at: str | None = Field(None, description="offset when it started firing")


class TaskExpectation(_Strict):
    """A task expected to be open (status open or escalated); unset fields match anything."""

    customer: str
    rule: str
    assignee: str | None = None
    role: str | None = Field(None, description="assignee_role: the role, or 'fallback'")
    status: Literal["open", "escalated"] | None = None
    priority: Literal["low", "medium", "high", "urgent"] | None = None
    due: str | None = Field(None, description="offset of due_at")
    cc: list[str] | None = None
    playbook: str | None = None
    title: str | None = Field(None, description="a substring of the title")


class EvalPoint(_Strict):
    """What must be firing and open at ``at``; an omitted list is not checked."""

    at: str
    firing: list[AlertExpectation] | None = None
    tasks: list[TaskExpectation] | None = None


class TestCase(_Strict):
    """One scenario: input per customer, and expectations at points in time."""

    __test__ = False  # not a pytest class

    name: str
    input: dict[str, list[InputItem] | None] = Field(default_factory=dict)
    eval_at: list[EvalPoint] = Field(min_length=1)


class TestFileModel(_Strict):
    """A rule test file."""

    __test__ = False

    rule_files: str | list[str] = Field(min_length=1)
    start: datetime | date
    accounts: dict[str, AccountRecord] = Field(default_factory=dict)
    tests: list[TestCase] = Field(min_length=1)

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime | date) -> datetime:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("start needs a UTC offset, like 2026-01-05T09:00:00Z")
            return value
        return datetime(value.year, value.month, value.day, tzinfo=UTC)


# -- reports -------------------------------------------------------------------------------------
@dataclass
class Mismatch:
    """What differed in one section (``firing`` or ``tasks``) at one eval point."""

    section: str
    missing: list[str]
    unexpected: list[str]


@dataclass
class EvalFailure:
    """An eval point whose expectation was not met."""

    at: str
    when: datetime
    line: int
    mismatches: list[Mismatch]


@dataclass
class TestReport:
    """The outcome of one test."""

    __test__ = False

    name: str
    line: int
    failures: list[EvalFailure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if every expectation held and nothing went wrong."""
        return not self.failures and not self.errors


@dataclass
class TestFileReport:
    """The outcome of one test file: its tests, or the problems that kept it from running."""

    __test__ = False

    path: Path
    tests: list[TestReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if the file was valid, its rules loaded and every test passed."""
        return not self.problems and all(t.ok for t in self.tests)

    @property
    def failed(self) -> list[TestReport]:
        """The tests that did not pass."""
        return [t for t in self.tests if not t.ok]


# -- reading a file ------------------------------------------------------------------------------
Loc = tuple[str | int, ...]


class _Problems:
    def __init__(self, path: Path, root: yaml.Node | None) -> None:
        self.path, self.root = path, root
        self.items: list[str] = []

    def add(self, loc: Loc, message: str) -> None:
        self.items.append(f"{self.path}:{self.line(loc)}: {_where(loc)}{message}")

    def line(self, loc: Loc) -> int:
        return _line_of(self.root, loc) if self.root is not None else 1


def _where(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return f"{text}: " if text else ""


def _line_of(node: yaml.Node, loc: Loc) -> int:
    """The line of the YAML node at ``loc`` (the deepest one found on the way)."""
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if str(key.value) == str(part):
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _duplicate_keys(node: yaml.Node, problems: list[tuple[int, str]]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    problems.append((key.start_mark.line + 1, f"duplicate key {key.value!r}"))
                seen.add(key.value)
            _duplicate_keys(value, problems)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _duplicate_keys(item, problems)


_PYDANTIC_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key missing",
}


def _read(path: Path) -> tuple[TestFileModel | None, _Problems]:
    problems = _Problems(path, None)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.items.append(f"{path}: cannot read: {exc.strerror}")
        return None, problems
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.items.append(f"{path}:{mark.line + 1 if mark else 1}: YAML error: {exc}")
        return None, problems
    problems.root = root
    if root is None or not isinstance(data, dict):
        problems.items.append(f"{path}:1: a test file is a mapping with rule_files, start, tests")
        return None, problems
    dups: list[tuple[int, str]] = []
    _duplicate_keys(root, dups)
    problems.items.extend(f"{path}:{line}: {message}" for line, message in dups)
    try:
        model = TestFileModel.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not _is_type_tag(p))
            message = _PYDANTIC_MESSAGES.get(err["type"], err["msg"])
            if loc and loc[-1] in _USAGE and err["type"] in ("string_type", "list_type"):
                message = f"expected a line like: {_USAGE[str(loc[-1])]} (or a list of them)"
            problems.add(loc, message.removeprefix("Value error, "))
        problems.items = list(dict.fromkeys(problems.items))
        return None, problems
    return model, problems


def _is_type_tag(part: str | int) -> bool:
    """Pydantic adds the union member it tried (``str``, ``list[str]``) to an error's loc."""
    return isinstance(part, str) and (part in ("str", "datetime", "date") or "[" in part)


# -- compiling a test ----------------------------------------------------------------------------
@dataclass
class _Step:
    customer: str
    draft: Draft
    loc: Loc


@dataclass
class _Point:
    at: float
    text: str
    line: int
    firing: list[AlertExpectation] | None
    tasks: list[TaskExpectation] | None


@dataclass
class _Compiled:
    name: str
    line: int
    customers: list[str]
    steps: list[_Step]
    points: list[_Point]


def _compile_test(
    test: TestCase,
    index: int,
    accounts: dict[str, dict[str, Any]],
    rules: RuleSet,
    problems: _Problems,
) -> _Compiled:
    base: Loc = ("tests", index)
    by_id = {r.id: r for r in rules.rules}
    steps: list[_Step] = []
    customers = list(test.input)
    for customer, items in test.input.items():
        if customer in accounts:
            record = {"change": accounts[customer]}
            steps.append(_Step(customer, Draft("account", 0.0, record), ("accounts", customer)))
        for i, item in enumerate(items or []):
            loc: Loc = (*base, "input", customer, i)
            given = item.given()
            if len(given) != 1:
                problems.add(
                    loc,
                    "each input line has exactly one of "
                    + ", ".join((*INPUT_KINDS, "account"))
                    + (f" (got {', '.join(given)})" if given else ""),
                )
                continue
            kind = given[0]
            if kind == "account":
                assert item.account is not None
                steps.extend(_account_step(customer, item.account, (*loc, "account"), problems))
                continue
            value = getattr(item, kind)
            lines = [value] if isinstance(value, str) else list(value or [])
            if not lines:
                problems.add((*loc, kind), f"{kind} needs a line like: {_USAGE[kind]}")
            for j, line in enumerate(lines):
                line_loc: Loc = (*loc, kind) if isinstance(value, str) else (*loc, kind, j)
                try:
                    drafts = parse_notation(kind, line)
                except NotationError as exc:
                    problems.add(line_loc, str(exc))
                    continue
                if kind == "task_updates":
                    rule_id = drafts[0].fields["rule"]
                    if rule_id not in by_id:
                        problems.add(line_loc, _unknown_rule(rule_id, by_id))
                        continue
                    if by_id[rule_id].rule.task is None:
                        problems.add(line_loc, f"rule {rule_id!r} has no task")
                        continue
                steps.extend(_Step(customer, d, line_loc) for d in drafts)
    steps.sort(key=lambda s: s.draft.at)
    points: list[_Point] = []
    for i, point in enumerate(test.eval_at):
        loc = (*base, "eval_at", i)
        try:
            at = parse_offset(point.at)
        except NotationError as exc:
            problems.add((*loc, "at"), str(exc))
            continue
        for j, alert in enumerate(point.firing or []):
            _check_expectation(alert, (*loc, "firing", j), customers, by_id, problems)
        for j, task in enumerate(point.tasks or []):
            _check_expectation(task, (*loc, "tasks", j), customers, by_id, problems)
        checked = point.model_fields_set  # `firing:` left empty (null) means "nothing"
        points.append(
            _Point(
                at=at,
                text=str(point.at),
                line=problems.line(loc),
                firing=(point.firing or []) if "firing" in checked else None,
                tasks=(point.tasks or []) if "tasks" in checked else None,
            )
        )
    points.sort(key=lambda p: p.at)
    return _Compiled(test.name, problems.line(base), customers, steps, points)


def _check_expectation(
    exp: AlertExpectation | TaskExpectation,
    loc: Loc,
    customers: list[str],
    by_id: dict[str, Any],
    problems: _Problems,
) -> None:
    if exp.customer not in customers:
        problems.add(
            (*loc, "customer"),
            f"customer {exp.customer!r} has no input in this test "
            f"(list it, even as `{exp.customer}: []`)",
        )
    if exp.rule not in by_id:
        problems.add((*loc, "rule"), _unknown_rule(exp.rule, by_id))
    offsets = ("fired_at",) if isinstance(exp, AlertExpectation) else ("due",)
    for name in offsets:
        value = getattr(exp, name)
        if value is not None:
            try:
                parse_offset(value)
            except NotationError as exc:
                problems.add((*loc, name), str(exc))


def _unknown_rule(rule_id: str, by_id: dict[str, Any]) -> str:
    close = difflib.get_close_matches(rule_id, list(by_id), n=1)
    return f"unknown rule {rule_id!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def _account_fields(record: dict[str, Any], loc: Loc, problems: _Problems) -> dict[str, Any]:
    out = dict(record)
    renewal = out.get("renewal_at")
    if isinstance(renewal, str):
        try:
            out["renewal_at"] = parse_offset(renewal)
        except NotationError as exc:
            problems.add((*loc, "renewal_at"), str(exc))
            out.pop("renewal_at")
    elif isinstance(renewal, date) and not isinstance(renewal, datetime):
        out["renewal_at"] = datetime(renewal.year, renewal.month, renewal.day, tzinfo=UTC)
    elif isinstance(renewal, datetime) and renewal.tzinfo is None:
        problems.add((*loc, "renewal_at"), "renewal_at needs a UTC offset")
        out.pop("renewal_at")
    return out


def _account_step(
    customer: str, change: AccountChange, loc: Loc, problems: _Problems
) -> list[_Step]:
    try:
        at = parse_offset(change.at)
    except NotationError as exc:
        problems.add((*loc, "at"), str(exc))
        return []
    values = {k: getattr(change, k) for k in change.model_fields_set if k != "at"}
    values = _account_fields(values, loc, problems)
    return [_Step(customer, Draft("account", at, {"change": values}), loc)]


# -- running a test ------------------------------------------------------------------------------
class _Clock:
    """The engine's wall clock: the simulated time, so emitted times are deterministic."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Run:
    """One test's customers, the engine's outputs folded into what is firing and open."""

    def __init__(self, engine: Engine, clock: _Clock, start: datetime, test: _Compiled) -> None:
        self.engine, self.clock, self.start = engine, clock, start
        self.states = {c: CustomerState(c) for c in test.customers}
        self.accounts: dict[str, dict[str, Any]] = {c: {} for c in test.customers}
        self.firing: dict[str, AlertEvent] = {}
        self.tasks: dict[str, TaskEvent] = {}
        self.latest_task: dict[tuple[str, str, bool], str] = {}
        self.errors: list[str] = []
        self.seq = 0

    def fold(self, result: Result) -> None:
        for out in result.outputs:
            if isinstance(out, AlertEvent):
                if out.status == "firing":
                    self.firing[out.alert_id] = out
                else:
                    self.firing.pop(out.alert_id, None)
            elif out.status == "cancelled":
                self.tasks.pop(out.task_id, None)
            else:
                self.tasks[out.task_id] = out
                escalated = out.status == "escalated"
                self.latest_task[(out.customer_id, out.rule_id, escalated)] = out.task_id
        for error in result.errors:
            self.errors.append(
                f"rule {error.rule_id} failed for {error.customer_id}: {error.message}"
            )

    def epoch(self, offset: float) -> float:
        return (self.start + timedelta(seconds=offset)).timestamp()

    def apply(self, step: _Step, line: int) -> None:
        state = self.states[step.customer]
        draft = step.draft
        self.seq += 1
        event_id = f"{step.customer}-{draft.kind}-{self.seq}"
        fields = dict(draft.fields)
        if draft.kind == "account":  # a change to the record so far; null removes a field
            record = self.accounts[step.customer]
            for key, value in fields["change"].items():
                if value is None:
                    record.pop(key, None)
                else:
                    record[key] = value
            fields = dict(record)
        self.clock.now = self.epoch(draft.at)
        task_id = None
        if draft.kind == "task_update":
            self.fold(self.engine.advance(state, self.clock.now))
            task_id = self.latest_task.get(
                (step.customer, fields["rule"], bool(fields["escalation"]))
            )
            if task_id is None:
                what = "escalation task" if fields["escalation"] else "task"
                self.errors.append(
                    f"line {line}: task_updates at {format_offset(draft.at)}: rule "
                    f"{fields['rule']!r} has opened no {what} for {step.customer} by then"
                )
                return
        try:
            event = Draft(draft.kind, draft.at, fields).to_event(
                step.customer, event_id, self.start, task_id
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            self.errors.append(f"line {line}: not a valid {draft.kind} event: {problems}")
            return
        self.fold(self.engine.apply(state, event))
        if isinstance(event, TaskUpdateEvent) and event.status in ("done", "dismissed"):
            self.tasks.pop(event.task_id, None)

    def advance(self, offset: float) -> None:
        self.clock.now = self.epoch(offset)
        for state in self.states.values():
            self.fold(self.engine.advance(state, self.clock.now))


def _run_test(
    compiled: _Compiled, engine: Engine, clock: _Clock, start: datetime, problems: _Problems
) -> TestReport:
    report = TestReport(compiled.name, compiled.line)
    run = _Run(engine, clock, start, compiled)
    try:
        _evaluate(compiled, run, problems, report)
    except Exception as exc:  # an engine bug: report it, run the other tests
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        report.errors.append(f"the engine raised {type(exc).__name__} at {where}: {exc}")
    report.errors[:0] = list(dict.fromkeys(run.errors))
    return report


def _evaluate(compiled: _Compiled, run: _Run, problems: _Problems, report: TestReport) -> None:
    start = run.start
    pending = list(compiled.steps)
    for point in compiled.points:
        while pending and pending[0].draft.at <= point.at:
            step = pending.pop(0)
            run.apply(step, problems.line(step.loc))
        run.advance(point.at)
        mismatches = []
        if point.firing is not None:
            mismatches.extend(_compare_alerts(point.firing, list(run.firing.values()), start))
        if point.tasks is not None:
            mismatches.extend(_compare_tasks(point.tasks, list(run.tasks.values()), start))
        if mismatches:
            when = start + timedelta(seconds=point.at)
            report.failures.append(EvalFailure(point.text, when, point.line, mismatches))


# -- comparing -----------------------------------------------------------------------------------
E = TypeVar("E")
A = TypeVar("A")


def _match(
    expected: list[E], actual: list[A], fits: Callable[[E, A], bool]
) -> tuple[list[E], list[A]]:
    """Unmatched expectations and actual items after a maximum one-to-one matching."""
    owner: dict[int, int] = {}  # actual index -> expected index

    def assign(e: int, seen: set[int]) -> bool:
        for a, item in enumerate(actual):
            if a in seen or not fits(expected[e], item):
                continue
            seen.add(a)
            if a not in owner or assign(owner[a], seen):
                owner[a] = e
                return True
        return False

    matched = {e for e in range(len(expected)) if assign(e, set())}
    missing = [x for i, x in enumerate(expected) if i not in matched]
    unexpected = [x for i, x in enumerate(actual) if i not in owner]
    return missing, unexpected


def _same_time(start: datetime, offset: str, when: datetime) -> bool:
    return abs((start + timedelta(seconds=parse_offset(offset)) - when).total_seconds()) < 0.001


def _compare_alerts(
    expected: list[AlertExpectation], actual: list[AlertEvent], start: datetime
) -> list[Mismatch]:
    def fits(e: AlertExpectation, a: AlertEvent) -> bool:
        return (
            e.customer == a.customer_id
            and e.rule == a.rule_id
            and (e.severity is None or e.severity == a.severity)
            and (e.summary is None or e.summary in a.summary)
            and (e.labels is None or all(a.labels.get(k) == v for k, v in e.labels.items()))
            and (e.fired_at is None or _same_time(start, e.fired_at, a.fired_at))
        )

    missing, unexpected = _match(expected, _sorted_alerts(actual), fits)
    if not missing and not unexpected:
        return []
    show_labels = any(e.labels is not None for e in expected)
    show_fired = any(e.fired_at is not None for e in expected)
    return [
        Mismatch(
            "firing",
            [_expected_alert(e) for e in missing],
            [_actual_alert(a, start, show_labels, show_fired) for a in unexpected],
        )
    ]


def _sorted_alerts(alerts: list[AlertEvent]) -> list[AlertEvent]:
    return sorted(alerts, key=lambda a: (a.rule_id, a.customer_id, a.fired_at))


def _labels(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"


def _expected_alert(e: AlertExpectation) -> str:
    text = f"{e.rule} {e.customer} {e.severity or '*'}"
    if e.summary is not None:
        text += f' "…{e.summary}…"'
    if e.labels is not None:
        text += f" labels={_labels(e.labels)}"
    if e.fired_at is not None:
        text += f" fired_at={e.fired_at}"
    return text


def _actual_alert(a: AlertEvent, start: datetime, labels: bool, fired: bool) -> str:
    text = f'{a.rule_id} {a.customer_id} {a.severity} "{a.summary}"'
    if labels:
        text += f" labels={_labels(a.labels)}"
    if fired:
        text += f" fired_at={format_offset((a.fired_at - start).total_seconds())}"
    return text


_TASK_EXTRAS = ("role", "priority", "due", "cc", "playbook", "title")


def _compare_tasks(
    expected: list[TaskExpectation], actual: list[TaskEvent], start: datetime
) -> list[Mismatch]:
    def fits(e: TaskExpectation, a: TaskEvent) -> bool:
        return (
            e.customer == a.customer_id
            and e.rule == a.rule_id
            and (e.assignee is None or e.assignee == a.assignee)
            and (e.role is None or e.role == a.assignee_role)
            and (e.status is None or e.status == a.status)
            and (e.priority is None or e.priority == a.priority)
            and (e.due is None or _same_time(start, e.due, a.due_at))
            and (e.cc is None or sorted(e.cc) == sorted(a.cc))
            and (e.playbook is None or e.playbook == a.playbook)
            and (e.title is None or e.title in a.title)
        )

    ordered = sorted(actual, key=lambda t: (t.rule_id, t.customer_id, t.created_at, t.status))
    missing, unexpected = _match(expected, ordered, fits)
    if not missing and not unexpected:
        return []
    shown = [k for k in _TASK_EXTRAS if any(getattr(e, k) is not None for e in expected)]
    return [
        Mismatch(
            "tasks",
            [_expected_task(e) for e in missing],
            [_actual_task(a, start, shown) for a in unexpected],
        )
    ]


def _expected_task(e: TaskExpectation) -> str:
    text = f"{e.rule} {e.customer} {e.assignee or '*'} {e.status or '*'}"
    for key in _TASK_EXTRAS:
        value = getattr(e, key)
        if value is not None:
            text += f' {key}="…{value}…"' if key == "title" else f" {key}={_show(value)}"
    return text


def _actual_task(a: TaskEvent, start: datetime, shown: list[str]) -> str:
    text = f"{a.rule_id} {a.customer_id} {a.assignee} {a.status}"
    values = {
        "role": a.assignee_role,
        "priority": a.priority,
        "due": format_offset((a.due_at - start).total_seconds()),
        "cc": a.cc,
        "playbook": a.playbook,
        "title": a.title,
    }
    for key in shown:
        text += f' {key}="{values[key]}"' if key == "title" else f" {key}={_show(values[key])}"
    return text


def _show(value: Any) -> str:
    return "[" + ", ".join(value) + "]" if isinstance(value, list) else str(value)


# -- entry points --------------------------------------------------------------------------------
def run_test_file(path: Path) -> TestFileReport:
    """Read, check and run one test file (see docs/rules-testing.md)."""
    path = Path(path)
    report = TestFileReport(path)
    model, problems = _read(path)
    if model is None or problems.items:
        report.problems = problems.items
        return report
    names = [model.rule_files] if isinstance(model.rule_files, str) else model.rule_files
    rule_paths = [path.parent / f for f in names]
    try:
        rules = load_rules(rule_paths)
    except RulePackError as exc:
        line = problems.line(("rule_files",))
        report.problems = [f"{path}:{line}: rule_files do not load:"]
        report.problems += [f"  {p}" for p in exc.problems]
        return report
    accounts = {
        customer: _account_fields(
            record.model_dump(exclude_none=True), ("accounts", customer), problems
        )
        for customer, record in model.accounts.items()
    }
    compiled = [_compile_test(t, i, accounts, rules, problems) for i, t in enumerate(model.tests)]
    if problems.items:
        report.problems = problems.items
        return report
    clock = _Clock()
    engine = Engine(rules, EngineConfig(), wall_clock=clock)
    start = model.start
    assert isinstance(start, datetime)  # the validator made it one
    report.tests = [_run_test(c, engine, clock, start, problems) for c in compiled]
    return report


def run_test_files(paths: Iterable[Path]) -> list[TestFileReport]:
    """Run every test file; one report per file, in the order given."""
    return [run_test_file(Path(p)) for p in paths]


def format_report(reports: Sequence[TestFileReport], verbose: bool = False) -> str:
    """Human-readable results, promtool style: failures in detail, then a summary line.

    ``verbose`` also lists the tests that passed.
    """
    lines: list[str] = []
    total = failed = bad_files = 0
    for report in reports:
        if report.problems:
            bad_files += 1
            lines.append(f"{report.path}: INVALID")
            lines.extend(f"  {p}" for p in report.problems)
            continue
        total += len(report.tests)
        failed += len(report.failed)
        status = "ok" if report.ok else f"{len(report.failed)} of {len(report.tests)} FAILED"
        lines.append(f"{report.path}: {len(report.tests)} test(s), {status}")
        for test in report.tests:
            if test.ok:
                if verbose:
                    lines.append(f"  ok      {test.name}")
                continue
            lines.append(f"  FAILED  {report.path}:{test.line}: {test.name}")
            for failure in test.failures:
                for mismatch in failure.mismatches:
                    lines.append(
                        f"    at {failure.at} ({_iso(failure.when)}), line {failure.line}, "
                        f"{mismatch.section}:"
                    )
                    lines.extend(f"      missing:    {m}" for m in mismatch.missing)
                    lines.extend(f"      unexpected: {u}" for u in mismatch.unexpected)
            lines.extend(f"    error: {e}" for e in test.errors)
    if bad_files or failed:
        parts = [f"{failed} of {total} test(s) failed"] if failed or total else []
        if bad_files:
            parts.append(f"{bad_files} invalid test file(s)")
        lines.append("FAILED: " + ", ".join(parts))
    else:
        lines.append(f"SUCCESS: {total} test(s) in {len(reports)} file(s)")
    return "\n".join(lines)
