"""`churnguard backtest` as a user runs it on a small JSON-lines history: bad lines, --strict,
labels from a CSV, clear usage errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from agents.backtest_cli import backtest
from streams.settings import BUILTIN_PACKS


def churnguard(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agents", "backtest", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )


def history(tmp_path: Path) -> Path:
    lines = [
        {"event_id": f"l{c}", "customer_id": c, "occurred_at": "2026-01-05T09:00:00+00:00",
         "user_id": "u", "channel": "web"}
        for c in ("a", "b", "c")
    ]  # fmt: skip
    path = tmp_path / "h.jsonl"
    body = [orjson.dumps(x) for x in lines]
    body.insert(1, b"{oops")
    body.append(orjson.dumps({**lines[0], "event_id": "l-late", "occurred_at": "2026-02-20"}))
    path.write_bytes(b"\n".join(body) + b"\n")
    return path


def test_bad_lines_are_reported_and_counted_and_labels_read(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("customer_id,churned_at\nb,2026-02-15\nc,\n")
    out = tmp_path / "out"
    done = churnguard(
        "--events", history(tmp_path), "--labels", labels, "--rules", BUILTIN_PACKS,
        "--to", "2026-02-28", "--out", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"skipped {tmp_path / 'h.jsonl'}:2: not JSON" in done.stderr
    assert "h.jsonl:5: login: schema: occurred_at" in done.stderr  # no offset in the time
    report = orjson.loads((out / "report.json").read_bytes())
    assert report["input"]["bad_lines"] == 2 and report["input"]["events"] == 3
    assert report["labels"]["churned"] == 1 and report["labels"]["population"] == 3
    inactivity = report["metrics"]["inactivity"]  # every customer stops logging in
    assert inactivity["customers_alerted"] == 3 and inactivity["hits"] == 1
    # fired 19 Jan 09:00 (14 days after the login), churned 15 Feb 00:00: 26 days 15 hours
    assert inactivity["lead_time_days_median"] == pytest.approx(26.625, abs=0.01)
    alerts = [orjson.loads(x) for x in (out / "alerts.jsonl").read_bytes().splitlines()]
    assert {a["customer_id"] for a in alerts if a["rule_id"] == "inactivity"} == {"a", "b", "c"}


def in_process(*args: str | Path) -> tuple[int, str]:
    """The command in this process (click's runner: the real command, real files)."""
    result = CliRunner().invoke(backtest, [str(a) for a in args])
    return result.exit_code, result.output


def test_strict_stops_at_the_first_bad_line(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("customer_id,churned_at\n")
    code, output = in_process("--events", history(tmp_path), "--labels", labels, "--strict")
    assert code == 2
    assert f"churnguard: {tmp_path / 'h.jsonl'}:2: not JSON" in output


def test_usage_errors_say_what_to_do(tmp_path: Path) -> None:
    code, output = in_process("--events", history(tmp_path))
    assert code == 2 and "exactly one of --labels" in output
    code, output = in_process("--events", history(tmp_path), "--derive-labels", "no-order:30d")
    assert code == 2 and "--derive-labels needs --to" in output
    labels = tmp_path / "l.csv"
    labels.write_text("customer_id,churned_at\n")
    code, output = in_process(
        "--events", history(tmp_path), "--labels", labels, "--sweep", "x=1..2"
    )
    assert code == 2 and "RULE.PARAM=START..STOP step STEP" in output
    code, output = in_process("--help")
    assert code == 0 and "precision" in output and "--derive-labels" in output
