"""The backtest's report files written by a process started before the history is read.

A backtest's main process works alone while it starts, reads the history and writes the
report; the other CPUs wait. Importing matplotlib and drawing the charts takes about a
second of that. A child forked at the start imports matplotlib at once (while the parent
reads), then waits for the report and writes report.json, report.html and the charts while
the parent writes alerts.jsonl. Where processes cannot be forked the parent writes them.
"""

from __future__ import annotations

import multiprocessing
import signal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from agents.backtest_report import pyplot, write_report_files


class ReportWriteError(RuntimeError):
    """The report writer could not write the report files."""


class ReportWriter:
    """Writes the report files in a child process; :meth:`submit`, then :meth:`written`."""

    def __init__(self) -> None:
        self._conn: Connection | None = None
        self._process: Any = None
        self._pending: tuple[Path, dict[str, Any], bytes] | None = None
        if "fork" not in multiprocessing.get_all_start_methods():
            return
        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, self._conn), name="churnguard-report", daemon=True
        )
        self._process.start()
        child.close()

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, out: Path, report: dict[str, Any], report_json: bytes) -> None:
        """Start writing the report files into ``out`` (report.json is ``report_json``)."""
        if self._conn is None:
            self._pending = (out, report, report_json)
            return
        self._conn.send((out, report, report_json))

    def written(self) -> list[Path]:
        """Wait for the files :meth:`submit` asked for; their paths (ReportWriteError)."""
        if self._conn is None:
            assert self._pending is not None
            return write_report_files(*self._pending)
        try:
            status, payload = self._conn.recv()
        except EOFError:
            raise ReportWriteError(
                f"the report writer process ended with exit code {self._process.exitcode}"
            ) from None
        finally:
            self.close()
        if status != "ok":
            raise ReportWriteError(payload)
        return [Path(p) for p in payload]

    def close(self) -> None:
        """Let the child go (it ends without writing if nothing was submitted)."""
        if self._conn is None:
            return
        self._conn.close()
        self._conn = None
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()


def _serve(conn: Connection, parents: Connection) -> None:
    parents.close()  # the parent's end, inherited: else closing it would never reach us
    # Ctrl-C is the parent's to handle: it closes its end, and the child ends on that
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pyplot()  # the import is the slow part: do it while the parent reads the history
    try:
        job = conn.recv()
    except EOFError:  # the parent stopped before the report (an error, or Ctrl-C)
        return
    try:
        written = write_report_files(*job)
    except Exception as exc:
        conn.send(("error", f"cannot write the report: {type(exc).__name__}: {exc}"))
    else:
        conn.send(("ok", [str(p) for p in written]))
    finally:
        conn.close()
