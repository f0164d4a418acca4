"""Stage (q) of bench.throughput: Quix Streams as a yardstick next to the naive Faust app.

``run_quix`` runs ``bench/quix_app.py`` (RocksDB state + changelog, at-least-once, one state
read and write per event) as a subprocess on the input topics and times it from its first
processed message to its N-th, so start-up and the consumer-group join are excluded, as for
stage (b). It needs the ``bench`` extra (``pip install '.[bench]'``); without it the stage
comes back with ``error`` set rather than failing the run.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # bench.throughput imports this module: its helpers are imported lazily
    from bench.throughput import Stage

NAME = "(q) Quix Streams: RocksDB state + changelog"


def run_quix(
    bootstrap: str, topics: list[str], events: int, workdir: Path, timeout: float
) -> Stage:
    """Run bench.quix_app over ``topics`` until it has processed ``events`` messages.

    Returns a Stage with ``events``, ``seconds`` (first → N-th processed message) and
    ``details`` (``startup_s`` excluded, the final checkpoint commit, ``notes``), or with
    ``error`` set if quixstreams is missing or the run fails or times out.
    """
    from bench.throughput import (
        POLL_S,
        Stage,
        StageError,
        check_alive,
        child,
        child_env,
        log_tail,
    )

    stage = Stage(NAME)
    if importlib.util.find_spec("quixstreams") is None:
        stage.error = "quixstreams is not installed (pip install '.[bench]')"
        return stage
    state_dir = workdir / "quix-state"
    shutil.rmtree(state_dir, ignore_errors=True)  # ours; stale state would skew the run
    log_path = workdir / "quix.log"
    result_path = workdir / "quix-result.json"
    result_path.unlink(missing_ok=True)
    # A fresh group (and so fresh changelog topics) per run: nothing committed earlier counts.
    group = f"bench-quix-{uuid.uuid4().hex[:8]}"
    argv = [
        sys.executable,
        "-m",
        "bench.quix_app",
        "--broker",
        bootstrap,
        "--topics",
        ",".join(topics),
        "--events",
        str(events),
        "--state-dir",
        str(state_dir),
        "--group",
        group,
        "--result",
        str(result_path),
    ]
    spawned = time.time()
    deadline = time.monotonic() + timeout
    try:
        with child(argv, child_env({}), log_path) as proc:
            while proc.poll() is None:  # the app stops itself after the N-th message
                if time.monotonic() > deadline:
                    raise StageError(
                        f"Quix Streams did not process {events:,} events in {timeout:.0f} s; "
                        f"log {log_path}:\n{log_tail(log_path)}"
                    )
                time.sleep(POLL_S)
            if not result_path.exists():
                check_alive(proc, "Quix Streams app", log_path)
        result: dict[str, Any] = json.loads(result_path.read_text())
        if result.get("last") is None or result.get("first") is None:
            raise StageError(
                f"Quix Streams stopped after {result.get('processed', 0):,} of {events:,} "
                f"events; log {log_path}:\n{log_tail(log_path)}"
            )
    except StageError as exc:
        stage.error = str(exc)
        return stage
    stage.events = int(result["processed"])
    stage.seconds = result["last"] - result["first"]
    startup = result["first"] - spawned
    final_commit = result["stopped"] - result["last"]
    stage.details.update(
        {
            "startup_s": round(startup, 1),
            "import_s": round(result["imported"] - spawned, 1),
            "join_s": round(result["first"] - result["run_at"], 1),
            "final_commit_s": round(final_commit, 2),
            "events_per_s_incl_final_commit": round(
                stage.events / (stage.seconds + final_commit), 1
            ),
            "merge": result["merge"],
            "processing_guarantee": "at-least-once",
            "state_reads_writes_per_event": 1.0,
            "group": group,
        }
    )
    if result.get("altered_topics"):
        stage.details["altered_topics"] = result["altered_topics"]
    stage.details["notes"] = (
        f"start-up + join {startup:.1f} s (excluded); 1 state read + write per event, "
        f"changelog once per key per checkpoint; final checkpoint commit {final_commit:.2f} s "
        f"(not timed; {stage.details['events_per_s_incl_final_commit']:,.0f} events/s with it)"
    )
    return stage
