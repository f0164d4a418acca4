"""Order history files turned into ``crm.orders`` events: CDNOW's format and mapped CSV.

Each row is one paid order at midnight UTC of its date (or at its timestamp when the CSV has
one). Ids are derived from the row's content and how often that same row occurred before in
the file, so importing a file twice yields the same ``event_id``s (churnguard's idempotency
drops the repeats) while different files never share ids by accident.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pydantic import ValidationError

from schemas import OrderEvent


class OrdersFileError(ValueError):
    """A row of an orders file that cannot be read: says the file, the line and why."""


@dataclass(frozen=True)
class CsvColumns:
    """Which CSV column holds what; ``currency``/``order_id`` columns are optional."""

    customer: str = "customer_id"
    date: str = "date"
    amount: str = "amount"
    order_id: str | None = None
    currency: str | None = None
    default_currency: str = "USD"
    date_format: str | None = None  # strptime format; default: ISO 8601 date or date-time
    delimiter: str = ","


OnError = Callable[[OrdersFileError], None] | None
"""Called with a bad row's error to skip the row; None: the error is raised (stops the read)."""


class _Ids:
    """Stable ids for rows: their content plus how often that content occurred before."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def __call__(self, *fields: str) -> str:
        digest = hashlib.blake2b("\x1f".join(fields).encode(), digest_size=8).hexdigest()
        count = self._seen.get(digest, 0)
        self._seen[digest] = count + 1
        return f"{digest}-{count}"


def parse_when(text: str, fmt: str | None) -> datetime:
    """A date or time in ``fmt`` (None: ISO 8601), in UTC unless it says its offset."""
    value = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _cdnow_day(text: str) -> datetime:
    """A CDNOW date (YYYYMMDD) at midnight UTC; ValueError when it is not one."""
    if len(text) == 8 and text.isascii() and text.isdigit():  # strptime: half of the read
        return datetime(int(text[:4]), int(text[4:6]), int(text[6:]), tzinfo=UTC)
    return parse_when(text, "%Y%m%d")


def _order(
    path: Path,
    line: int,
    ident: str,
    customer: str,
    when: datetime,
    amount: str,
    currency: str,
    order_id: str | None,
) -> OrderEvent:
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise OrdersFileError(f"{path}:{line}: amount {amount!r} is not a number") from None
    try:
        return OrderEvent(
            event_id=f"import-{ident}",
            customer_id=customer,
            occurred_at=when,
            order_id=order_id or f"import-{ident}",
            amount=value,
            currency=currency,
            status="paid",
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise OrdersFileError(f"{path}:{line}: {where}: {first['msg']}") from None


def read_cdnow(
    path: Path,
    *,
    until: date | None = None,
    prefix: str = "",
    currency: str = "USD",
    on_error: OnError = None,
) -> Iterator[OrderEvent]:
    """Orders of a CDNOW_master.txt-style file (``customer_id date number_of_cds value``).

    Dates are ``YYYYMMDD``; rows after ``until`` are skipped; customer ids get ``prefix``.
    A bad row raises OrdersFileError, or is passed to ``on_error`` and skipped.
    """
    for item in _cdnow_rows(path, until, prefix, currency):
        if isinstance(item, OrdersFileError):
            if on_error is None:
                raise item
            on_error(item)
        else:
            yield item


def _cdnow_rows(
    path: Path, until: date | None, prefix: str, currency: str
) -> Iterator[OrderEvent | OrdersFileError]:
    ids = _Ids()
    with path.open(encoding="utf-8") as lines:
        for line_no, raw in enumerate(lines, start=1):
            try:
                item = _cdnow_row(path, line_no, raw, ids, until, prefix, currency)
            except OrdersFileError as exc:
                yield exc
                continue
            if item is not None:
                yield item


def _cdnow_row(
    path: Path,
    line_no: int,
    raw: str,
    ids: _Ids,
    until: date | None,
    prefix: str,
    currency: str,
) -> OrderEvent | None:
    parts = raw.split()
    if not parts or (line_no == 1 and parts[0] == "customer_id"):
        return None
    if len(parts) != 4:
        raise OrdersFileError(
            f"{path}:{line_no}: expected 4 columns (customer_id date number_of_cds "
            f"dollar_value), got {len(parts)}"
        )
    customer, day, _, amount = parts
    try:
        when = _cdnow_day(day)
    except ValueError:
        raise OrdersFileError(f"{path}:{line_no}: date {day!r} is not YYYYMMDD") from None
    if until is not None and when.date() > until:
        return None
    ident = ids(customer, day, amount)
    return _order(path, line_no, ident, prefix + customer, when, amount, currency, None)


def read_csv(path: Path, columns: CsvColumns, *, until: date | None = None) -> Iterator[OrderEvent]:
    """Orders of a CSV file with a header row, read through ``columns``."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=columns.delimiter)
        wanted = [columns.customer, columns.date, columns.amount]
        wanted += [c for c in (columns.order_id, columns.currency) if c]
        missing = [c for c in wanted if c not in (reader.fieldnames or [])]
        if missing:
            raise OrdersFileError(
                f"{path}:1: missing column(s) {', '.join(missing)}; the header has "
                f"{', '.join(reader.fieldnames or [])}"
            )
        ids = _Ids()
        for row in reader:
            line_no = reader.line_num
            if any(row.get(c) is None for c in wanted):
                present = sum(v is not None for k, v in row.items() if k is not None)
                raise OrdersFileError(
                    f"{path}:{line_no}: {present} field(s), the header has "
                    f"{len(reader.fieldnames or [])}"
                )
            text = row[columns.date]
            try:
                when = parse_when(text, columns.date_format)
            except ValueError:
                raise OrdersFileError(
                    f"{path}:{line_no}: {columns.date} {text!r} is not a date"
                    + (f" in format {columns.date_format}" if columns.date_format else "")
                ) from None
            if until is not None and when.date() > until:
                continue
            currency = row[columns.currency] if columns.currency else columns.default_currency
            order_id = row[columns.order_id] if columns.order_id else None
            ident = ids(*(row[c] or "" for c in wanted))
            yield _order(
                path,
                line_no,
                ident,
                row[columns.customer],
                when,
                row[columns.amount],
                currency,
                order_id,
            )
