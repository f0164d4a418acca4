"""History importers: JSON lines of any kind, mapped CSV, CDNOW; bad lines and labels."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from agents.history_options import echo_bad_lines
from schemas import LoginEvent, OrderEvent
from streams.history import (
    BadLine,
    HistoryError,
    Problems,
    derive_no_order_labels,
    kind_of,
    read_all,
    read_labels,
    split_spec,
)

T0 = "2026-01-05T09:00:00+00:00"


def order(n: int, customer: str = "c1", at: str = T0, **extra: object) -> dict[str, object]:
    return {
        "event_id": f"o{n}",
        "customer_id": customer,
        "occurred_at": at,
        "order_id": f"ord{n}",
        "amount": "10.00",
        "currency": "EUR",
        "status": "paid",
        **extra,
    }


LOGIN = {
    "event_id": "l1",
    "customer_id": "c1",
    "occurred_at": "2026-01-04T09:00:00+00:00",
    "user_id": "u1",
    "channel": "web",
}
TICKET = {
    "event_id": "t1",
    "customer_id": "c2",
    "occurred_at": T0,
    "ticket_id": "k1",
    "kind": "complaint",
    "severity": "high",
    "status": "opened",
}


def write_jsonl(path: Path, lines: list[object]) -> Path:
    path.write_bytes(
        b"\n".join(x if isinstance(x, bytes) else orjson.dumps(x) for x in lines) + b"\n"
    )
    return path


def test_jsonl_mixes_kinds_by_field_topic_or_kind_and_sorts_by_time(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "h.jsonl",
        [order(1), {**LOGIN, "topic": "crm.logins"}, {**order(2), "kind": "order"}],
    )
    problems = Problems()
    events = read_all([str(path)], problems)
    assert problems.lines == []
    assert [type(e) for e in events] == [LoginEvent, OrderEvent, OrderEvent]
    assert [e.event_id for e in events] == ["l1", "o1", "o2"]  # stable within a time


def test_a_ticket_kind_field_is_not_taken_for_the_event_kind() -> None:
    assert kind_of(TICKET) == "ticket"  # "kind": "complaint" is the ticket's own field
    assert kind_of({"topic": "crm.tickets"}) == "ticket"
    assert kind_of({"nothing": 1}) is None


def test_bad_lines_are_reported_with_file_and_line_and_skipped(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "h.jsonl",
        [order(1), b"{not json", b"[1, 2]", {"event_id": "x"}, order(2, amount="-1"), TICKET],
    )
    problems = Problems()
    events = read_all([str(path)], problems)
    assert [e.event_id for e in events] == ["o1", "t1"]
    assert [(b.line, b.reason.split(":")[0]) for b in problems.lines] == [
        (2, "not JSON"),
        (3, "not a JSON object"),
        (4, "unknown event kind"),
        (5, "order"),
    ]
    assert str(problems.lines[0]).startswith(f"{path}:2: not JSON")


def test_strict_mode_stops_at_the_first_bad_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "h.jsonl", [order(1), b"{not json"])
    with pytest.raises(HistoryError, match=r"h\.jsonl:2: not JSON"):
        read_all([str(path)], Problems(strict=True))


def test_csv_through_a_column_mapping(tmp_path: Path) -> None:
    csv_path = tmp_path / "orders.csv"
    csv_path.write_text(
        "cust,day,total,note\nA,2026-01-02,12.50,x\nB,02/01/2026,3,y\nC,2026-01-03,abc,z\n"
    )
    (tmp_path / "orders.mapping.yaml").write_text(
        "kind: order\n"
        "columns: {customer_id: cust, occurred_at: day, amount: total}\n"
        "constants: {currency: USD, status: paid, order_id: imported}\n"
    )
    problems = Problems()
    events = read_all([str(csv_path)], problems)
    assert [(e.customer_id, str(e.amount)) for e in events] == [("A", "12.50")]  # type: ignore[attr-defined]
    assert events[0].occurred_at == datetime(2026, 1, 2, tzinfo=UTC)
    assert events[0].event_id.startswith("csv-")
    assert [(b.line, b.reason.split(":")[0]) for b in problems.lines] == [
        (3, "occurred_at '02/01/2026' is not a date"),
        (4, "order"),
    ]
    again = read_all([str(csv_path)], Problems())
    assert [e.event_id for e in again] == [e.event_id for e in events]


def test_csv_without_a_mapping_says_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(HistoryError, match="needs a column mapping"):
        read_all([str(path)], Problems())


def test_format_from_prefix_or_extension() -> None:
    assert split_spec("cdnow:data/CDNOW_master.txt") == ("cdnow", Path("data/CDNOW_master.txt"))
    assert split_spec("h.ndjson")[0] == "jsonl"
    with pytest.raises(HistoryError, match="prefix it"):
        split_spec("history.dat")


def test_cdnow_bad_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "cd.txt"
    path.write_text("00001 19970101 1 11.77\n00002 1997x 1 3.00\n00003 19970102 1\n")
    problems = Problems()
    events = read_all([f"cdnow:{path}"], problems)
    assert [e.customer_id for e in events] == ["00001"]
    assert [b.line for b in problems.lines] == [2, 3]


def test_labels_csv_and_derived_no_order_labels(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("customer_id,churned_at\nc1,2026-02-01\nc2,\nc3,soon\n")
    problems = Problems()
    labels = read_labels(path, problems)
    assert labels == {"c1": datetime(2026, 2, 1, tzinfo=UTC).timestamp()}
    assert [b.line for b in problems.lines] == [4]
    events = read_all(
        [
            str(
                write_jsonl(
                    tmp_path / "h.jsonl",
                    [order(1), order(2, "c2"), order(3, "c2", "2026-03-01T00:00:00+00:00")],
                )
            )
        ],
        Problems(),
    )
    end = datetime(2026, 2, 1, tzinfo=UTC).timestamp()
    assert derive_no_order_labels(events, end, end + 90 * 86400) == {"c1": end}


def test_the_commands_list_twenty_bad_lines_and_count_the_rest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    problems = Problems()
    for line in range(1, 23):
        problems.add(BadLine("h.jsonl", line, "not JSON"))
    echo_bad_lines(problems)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "skipped h.jsonl:1: not JSON" and err[19] == "skipped h.jsonl:20: not JSON"
    assert err[20:] == ["… and 2 more bad line(s)"]
