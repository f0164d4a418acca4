"""The backtest's report writer process: same files as writing in-process, clear errors."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from agents.backtest_report import write_report_files
from agents.report_writer import ReportWriteError, ReportWriter

REPORT = {
    "metrics": {
        "customer-dormant": {
            "alerts": 3,
            "customers_alerted": 2,
            "precision": 0.5,
            "lift": 1.0,
            "recall": 0.25,
            "f1": 0.333,
            "lead_time_days_median": 12.0,
            "lead_time_days_p90": 20.0,
            "alert_load": 1.5,
        }
    },
    "labels": {"churn_rate": 0.4, "source": "labels.csv", "churned": 4, "population": 10},
    "health": {
        "below": 50,
        "roc": {"auc": 0.75, "points": [{"fpr": 0, "tpr": 0}, {"fpr": 1, "tpr": 1}]},
    },
    "window": {"from": "1997-01-01T00:00:00Z", "to": "1997-10-01T00:00:00Z", "months": 9.0},
    "input": {"events": 40, "customers": 10, "files": ["orders.csv"], "bad_lines": 0},
    "engine": {"eval_every_s": 86400},
}


def test_the_child_writes_what_the_parent_would(tmp_path: Path) -> None:
    body = orjson.dumps(REPORT)
    with ReportWriter() as writer:
        writer.submit(tmp_path / "child", REPORT, body)
        written = writer.written()
    expected = write_report_files(tmp_path / "parent", REPORT, body)
    assert [p.name for p in written] == [p.name for p in expected]
    assert {"report.json", "report.html", "roc.svg", "rules.svg"} == {p.name for p in written}
    for child, parent in zip(written, expected, strict=True):
        assert child.read_bytes() == parent.read_bytes()


def test_a_report_that_cannot_be_written_is_an_error_naming_why(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    with ReportWriter() as writer:
        writer.submit(blocked, REPORT, orjson.dumps(REPORT))
        with pytest.raises(ReportWriteError, match="cannot write the report: FileExistsError"):
            writer.written()


def test_closing_without_a_report_ends_the_child() -> None:
    writer = ReportWriter()
    process = writer._process
    writer.close()
    assert process is not None and not process.is_alive()
    assert process.exitcode == 0


def test_without_fork_the_parent_writes_the_same_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("multiprocessing.get_all_start_methods", lambda: ["spawn"])
    body = orjson.dumps(REPORT)
    with ReportWriter() as writer:
        assert writer._process is None
        writer.submit(tmp_path / "here", REPORT, body)
        written = writer.written()
    expected = write_report_files(tmp_path / "parent", REPORT, body)
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in expected]
