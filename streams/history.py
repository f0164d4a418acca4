"""History files turned into input events, for backtests and replays.

Three formats, chosen by a ``FORMAT:`` prefix on the path or else by its extension:

* ``jsonl`` (``.jsonl``, ``.ndjson``, ``.json``): the wire format, one event per line, any
  mix of kinds. The kind comes from a ``kind`` (or ``event_kind``) field, a ``topic`` field
  naming an input topic (``crm.orders``), or else from the fields the event has
  (``order_id`` → order, ``ticket_id`` → ticket, …). Those routing fields are not kept.
* ``csv`` (``.csv``): one kind per file through a column-mapping file (YAML; see
  :class:`CsvMapping`), ``FILE.mapping.yaml`` beside the file unless one is given.
* ``cdnow`` (``.txt``): CDNOW_master.txt-style orders (streams/orders_file.py).

A bad line is reported as ``FILE:LINE: reason`` (:class:`BadLine`) and skipped, or stops
the read (:class:`HistoryError`) in strict mode. Everything here is pure file reading.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas import EVENT_KINDS, InputEvent
from streams.orders_file import OrdersFileError, parse_when, read_cdnow

FORMATS = ("jsonl", "csv", "cdnow")
EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".txt": "cdnow",
}
DEFAULT_TOPICS = {
    "crm.logins": "login",
    "crm.orders": "order",
    "crm.tickets": "ticket",
    "crm.contacts": "contact",
    "crm.accounts": "account",
    "cs.task-updates": "task_update",
}
# a field only one kind has, in the order they are tried
KIND_FIELDS = (
    ("task_id", "task_update"),
    ("order_id", "order"),
    ("ticket_id", "ticket"),
    ("change", "contact"),
    ("user_id", "login"),
    ("owner", "account"),
)
ROUTING_FIELDS = ("kind", "event_kind", "topic")


@dataclass(frozen=True)
class BadLine:
    """A line that could not be read: where and why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


class HistoryError(ValueError):
    """A history file that cannot be read (or a bad line in strict mode)."""


@dataclass
class Problems:
    """Collects bad lines; in strict mode the first one raises HistoryError."""

    strict: bool = False
    lines: list[BadLine] = field(default_factory=list)

    def add(self, bad: BadLine) -> None:
        """Record a bad line (raise HistoryError in strict mode)."""
        if self.strict:
            raise HistoryError(str(bad))
        self.lines.append(bad)


class CsvMapping(BaseModel):
    """How a CSV file's rows become events of one kind.

    ``columns`` maps event fields to CSV column names (``occurred_at: order_date``); fields
    not mapped but named like a column are taken as they are. ``constants`` gives fields a
    fixed value (``currency: USD``). ``kind_column`` instead of ``kind`` reads the kind per
    row (a kind name or an input topic). ``event_id`` is derived from the row's content when
    no column gives it, so reading the same file twice gives the same ids.
    """

    model_config = ConfigDict(extra="forbid")

    kind: str | None = None
    kind_column: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    constants: dict[str, Any] = Field(default_factory=dict)
    date_format: str | None = Field(None, description="strptime format of occurred_at")
    delimiter: str = ","


def split_spec(spec: str) -> tuple[str, Path]:
    """The format and path of ``[FORMAT:]PATH`` (format from the extension when not given)."""
    head, sep, rest = spec.partition(":")
    if sep and head in FORMATS:
        return head, Path(rest)
    path = Path(spec)
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise HistoryError(
            f"{spec}: cannot tell the format from the extension; prefix it with one of "
            f"{', '.join(f + ':' for f in FORMATS)}"
        )
    return fmt, path


def route(
    value: Mapping[str, Any], topics: Mapping[str, str] = DEFAULT_TOPICS
) -> tuple[str | None, str | None]:
    """The event kind of a JSON object and the routing field that named it (None when the
    kind came from the fields the event has). A ``kind`` field that names no event kind (a
    ticket's own ``kind: complaint``) is the event's, not a routing field."""
    for name in ROUTING_FIELDS:
        given = value.get(name)
        if isinstance(given, str):
            kind = given if given in EVENT_KINDS else topics.get(given)
            if kind is not None:
                return kind, name
    data = value.get("data") if "specversion" in value else None
    fields = data if isinstance(data, dict) else value
    return next((kind for name, kind in KIND_FIELDS if name in fields), None), None


def kind_of(value: Mapping[str, Any], topics: Mapping[str, str] = DEFAULT_TOPICS) -> str | None:
    """The event kind of a JSON object: its kind/topic field, or the fields it has."""
    return route(value, topics)[0]


def _validate(kind: str, value: dict[str, Any]) -> InputEvent:
    from schemas.codec import decode_input

    return decode_input(kind, orjson.dumps(value))


def read_jsonl(
    path: Path, problems: Problems, topics: Mapping[str, str] = DEFAULT_TOPICS
) -> Iterator[InputEvent]:
    """Events of a JSON-lines file, in file order; bad lines go to ``problems``."""
    from schemas import DecodeError

    with path.open("rb") as lines:
        for line_no, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                problems.add(BadLine(str(path), line_no, f"not JSON: {exc}"))
                continue
            if not isinstance(value, dict):
                problems.add(BadLine(str(path), line_no, "not a JSON object"))
                continue
            kind, routed_by = route(value, topics)
            if kind is None:
                problems.add(
                    BadLine(
                        str(path),
                        line_no,
                        "unknown event kind: no kind/topic field naming an input and no "
                        "field that tells (order_id, ticket_id, user_id, …)",
                    )
                )
                continue
            if routed_by is not None:
                value.pop(routed_by)
            try:
                yield _validate(kind, value)
            except DecodeError as exc:
                problems.add(BadLine(str(path), line_no, f"{kind}: {exc}"))


def load_mapping(path: Path) -> CsvMapping:
    """A CSV column-mapping file; raises HistoryError with the reason."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        mapping = CsvMapping.model_validate(data)
    except OSError as exc:
        raise HistoryError(f"{path}: cannot read the mapping: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise HistoryError(f"{path}: YAML error: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "mapping"
        raise HistoryError(f"{path}: {where}: {first['msg']}") from None
    if (mapping.kind is None) == (mapping.kind_column is None):
        raise HistoryError(f"{path}: give exactly one of kind or kind_column")
    if mapping.kind is not None and mapping.kind not in EVENT_KINDS:
        raise HistoryError(
            f"{path}: kind {mapping.kind!r} is not one of {', '.join(sorted(EVENT_KINDS))}"
        )
    return mapping


def read_mapped_csv(
    path: Path,
    mapping: CsvMapping,
    problems: Problems,
    topics: Mapping[str, str] = DEFAULT_TOPICS,
) -> Iterator[InputEvent]:
    """Events of a CSV file with a header row, read through ``mapping``."""
    from schemas import DecodeError

    seen: dict[str, int] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=mapping.delimiter)
        header = list(reader.fieldnames or [])
        wanted = list(mapping.columns.values())
        if mapping.kind_column:
            wanted.append(mapping.kind_column)
        missing = [c for c in wanted if c not in header]
        if missing:
            raise HistoryError(
                f"{path}:1: missing column(s) {', '.join(missing)}; the header has "
                f"{', '.join(header)}"
            )
        mapped = set(mapping.columns.values())
        for row in reader:
            line_no = reader.line_num
            if None in row or any(v is None for v in row.values()):
                problems.add(BadLine(str(path), line_no, f"not {len(header)} fields"))
                continue
            kind = mapping.kind
            if mapping.kind_column:
                given = row[mapping.kind_column]
                kind = given if given in EVENT_KINDS else topics.get(given)
                if kind is None:
                    problems.add(BadLine(str(path), line_no, f"unknown kind {given!r}"))
                    continue
            assert kind is not None
            value: dict[str, Any] = dict(mapping.constants)
            for name, text in row.items():  # unmapped columns named like fields, as they are
                if name not in mapped and name != mapping.kind_column and text != "":
                    value[name] = text
            for name, column in mapping.columns.items():
                if row[column] != "":
                    value[name] = row[column]
            if "occurred_at" in value:
                try:
                    value["occurred_at"] = parse_when(
                        str(value["occurred_at"]), mapping.date_format
                    )
                except ValueError:
                    fmt = f" in format {mapping.date_format}" if mapping.date_format else ""
                    problems.add(
                        BadLine(
                            str(path),
                            line_no,
                            f"occurred_at {value['occurred_at']!r} is not a date{fmt}",
                        )
                    )
                    continue
            if "event_id" not in value:
                digest = hashlib.blake2b(
                    "\x1f".join([kind, *(row[c] or "" for c in header)]).encode(), digest_size=8
                ).hexdigest()
                count = seen.get(digest, 0)
                seen[digest] = count + 1
                value["event_id"] = f"csv-{digest}-{count}"
            try:
                yield EVENT_KINDS[kind].model_validate(value)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or kind
                problems.add(BadLine(str(path), line_no, f"{kind}: {where}: {first['msg']}"))
            except DecodeError as exc:  # pragma: no cover - model validation only
                problems.add(BadLine(str(path), line_no, f"{kind}: {exc}"))


def read_history(
    spec: str,
    problems: Problems,
    mapping: Path | None = None,
    topics: Mapping[str, str] = DEFAULT_TOPICS,
) -> Iterator[InputEvent]:
    """Events of one ``[FORMAT:]PATH``, in file order (see the module docstring)."""
    fmt, path = split_spec(spec)
    if not path.is_file():
        raise HistoryError(f"{path}: no such file")
    if fmt == "jsonl":
        yield from read_jsonl(path, problems, topics)
    elif fmt == "csv":
        chosen = mapping or path.with_suffix(".mapping.yaml")
        if not chosen.is_file():
            raise HistoryError(
                f"{path}: a CSV file needs a column mapping: {chosen} not found (see --mapping)"
            )
        yield from read_mapped_csv(path, load_mapping(chosen), problems, topics)
    else:

        def bad(exc: OrdersFileError) -> None:
            where, _, reason = str(exc).partition(": ")
            file, _, line = where.rpartition(":")
            problems.add(BadLine(file, int(line) if line.isdigit() else 0, reason))

        yield from read_cdnow(path, on_error=bad)


def read_all(
    specs: list[str],
    problems: Problems,
    mapping: Path | None = None,
    on_event: Callable[[int], None] | None = None,
) -> list[InputEvent]:
    """Every event of every file, sorted by event time (stable: file order within a time)."""
    events: list[InputEvent] = []
    for spec in specs:
        for event in read_history(spec, problems, mapping):
            events.append(event)
            if on_event is not None and len(events) % 10_000 == 0:
                on_event(len(events))
    events.sort(key=lambda e: e.occurred_at)
    return events


def read_labels(path: Path, problems: Problems) -> dict[str, float]:
    """Churn labels from a CSV with ``customer_id`` and ``churned_at`` columns.

    An empty ``churned_at`` (or a customer not listed) means the customer did not churn.
    Returns customer → churn time (epoch seconds; a bare date is midnight UTC).
    """
    out: dict[str, float] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        missing = [c for c in ("customer_id", "churned_at") if c not in header]
        if missing:
            raise HistoryError(
                f"{path}:1: missing column(s) {', '.join(missing)}; the header has "
                f"{', '.join(header)}"
            )
        for row in reader:
            cid, text = row.get("customer_id") or "", row.get("churned_at") or ""
            if not cid:
                problems.add(BadLine(str(path), reader.line_num, "empty customer_id"))
                continue
            if not text:
                continue
            try:
                out[cid] = parse_when(text, None).timestamp()
            except ValueError:
                problems.add(
                    BadLine(str(path), reader.line_num, f"churned_at {text!r} is not a date")
                )
    return out


def derive_no_order_labels(
    events: list[InputEvent], end: float, horizon_end: float
) -> dict[str, float]:
    """Transactional churn: a customer seen before ``end`` with no order in
    ``[end, horizon_end)`` churned, at ``end`` (the calibration end)."""
    seen = {e.customer_id for e in events if e.occurred_at.timestamp() < end}
    ordered = {
        e.customer_id
        for e in events
        if e.event_kind == "order" and end <= e.occurred_at.timestamp() < horizon_end
    }
    return {cid: end for cid in sorted(seen - ordered)}
