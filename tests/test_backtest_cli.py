"""`churnguard backtest` as a user runs it on a small JSON-lines history: bad lines, --strict,
labels from a CSV, clear usage errors."""

from __future__ import annotations

import importlib.resources
import os
import signal
import subprocess
import sys
import time
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


def _group(pgid: int) -> list[int]:
    """The processes of a process group (from /proc: no dependency for one test)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_ctrl_c_during_a_split_run_stops_every_process_without_a_traceback(
    tmp_path: Path,
) -> None:
    cdnow = importlib.resources.files("lifetimes.datasets") / "CDNOW_master.txt"
    with importlib.resources.as_file(cdnow) as orders:
        run = subprocess.Popen(
            [sys.executable, "-m", "agents", "backtest", "--events", f"cdnow:{orders}",
             "--to", "1997-09-30", "--derive-labels", "no-order:1998-06-30", "--jobs", "2",
             "--out", str(tmp_path / "out")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a group of its own, as a terminal's foreground job
            # a test runner started in the background ignores SIGINT, and children inherit that
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            # the parent, the report writer and the two parts of the main run
            while len(_group(run.pid)) < 4 and run.poll() is None:
                assert time.monotonic() < deadline, "the parts never started"
                time.sleep(0.05)
            time.sleep(1.0)  # into their work
            os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
            _, err = run.communicate(timeout=60)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
    text = err.decode()
    assert run.returncode == 1 and "Aborted!" in text, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    deadline = time.monotonic() + 10
    while _group(run.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _group(run.pid) == [], "a process of the run outlived it"
