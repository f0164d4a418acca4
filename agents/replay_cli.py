"""``churnguard replay``: publish history to the input topics, paced, resumable.

Reads the files as ``backtest`` does (streams/history.py), sorts them in event time and sends
each event to its kind's input topic, keyed and partitioned by ``customer_id`` (so each
customer's events stay in order). Progress is saved after every acknowledged batch; Ctrl-C
stops after the batch in flight and the same command resumes from there.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import click

from agents.history_options import DAY, echo_bad_lines, mapping_option, parse_day, strict_option
from agents.progress import Progress
from schemas import InputEvent, encode
from streams.history import HistoryError, Problems, read_all
from streams.kafka_security import client_options
from streams.partitioning import partition_for
from streams.replay import (
    ReplayProgress,
    input_digest,
    load_progress,
    parse_speed,
    save_progress,
    wall_offset,
)
from streams.settings import Settings

BATCH = 500
INTERRUPTED = 130


@click.command(name="replay", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("files", nargs=-1, required=True, metavar="[FORMAT:]FILE...")
@mapping_option
@click.option(
    "--speed",
    default="max",
    show_default=True,
    help="Nx keeps the gaps between events, N times faster (10x); max sends at once.",
)
@click.option("--from", "from_", metavar="DATE", help="Only events on or after this day.")
@click.option("--to", "to", metavar="DATE", help="Only events up to this day (inclusive).")
@click.option(
    "--progress-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(".churnguard-replay.json"),
    show_default=True,
    help="Where the replay notes how far it got (resumed from when the input is the same).",
)
@click.option("--restart", is_flag=True, help="Ignore the progress file: replay from the start.")
@strict_option
def replay(
    files: tuple[str, ...],
    mapping: Path | None,
    speed: str,
    from_: str | None,
    to: str | None,
    progress_file: Path,
    restart: bool,
    strict: bool,
) -> None:
    """Publish history files to the input topics (crm.*, cs.task-updates), in event time.

    Formats as for `churnguard backtest` (JSON lines of any kinds, mapped CSV, CDNOW).
    Each event goes to its kind's topic keyed by customer_id, on the partition Kafka's
    default partitioner gives it (CHURNGUARD_PARTITIONS), so each customer's events keep
    their order. A progress bar shows rate and ETA. Ctrl-C stops after the batch in flight
    is acknowledged; running the same command again resumes there (--progress-file). Events
    keep their event_id, so anything sent twice is dropped by the worker. Run the worker
    with CHURNGUARD_CLOCK=event to sweep in event time.
    """
    try:
        pace = parse_speed(speed)
    except ValueError as exc:
        raise click.UsageError(f"--speed: {exc}") from None
    start = parse_day(from_, "--from") if from_ else None
    end = parse_day(to, "--to") + DAY if to else None
    settings = Settings()
    problems = Problems(strict=strict)
    try:
        events = read_all(list(files), problems, mapping)
    except (HistoryError, OSError) as exc:
        click.echo(f"churnguard: {exc}", err=True)
        sys.exit(2)
    echo_bad_lines(problems)
    events = [
        e
        for e in events
        if (start is None or e.occurred_at.timestamp() >= start)
        and (end is None or e.occurred_at.timestamp() < end)
    ]
    digest = input_digest(files, f"{from_}..{to}", events)
    done = None if restart else load_progress(progress_file, digest)
    if done is not None and done.done:
        click.echo(
            f"already replayed: {done.total:,} events ({progress_file}); --restart to send "
            "them again",
            err=True,
        )
        return
    first = done.sent if done is not None else 0
    if first:
        click.echo(f"resuming after {first:,} of {len(events):,} events", err=True)
    from aiokafka.errors import KafkaError

    try:
        sent = asyncio.run(_send(settings, events, first, pace, progress_file, digest))
    except KafkaError as exc:
        saved = load_progress(progress_file, digest)
        click.echo(
            f"\nchurnguard: broker {settings.bootstrap_servers}: {exc!r}; "
            f"{saved.sent if saved else first:,} events acknowledged, run again to resume",
            err=True,
        )
        sys.exit(2)
    if sent < len(events):
        click.echo(
            f"\ninterrupted: {sent:,} of {len(events):,} events sent; run the same command "
            "to resume",
            err=True,
        )
        sys.exit(INTERRUPTED)
    click.echo(f"sent {len(events) - first:,} events ({len(problems.lines)} bad lines skipped)")


async def _send(
    settings: Settings,
    events: list[InputEvent],
    first: int,
    pace: float | None,
    progress_file: Path,
    digest: str,
) -> int:
    """Send ``events[first:]``; returns how many of ``events`` are acknowledged in all."""
    from aiokafka import AIOKafkaProducer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    producer = AIOKafkaProducer(**client_options(settings), linger_ms=5, acks="all")
    topics = settings.input_topics
    bar = Progress(len(events))
    sent = first
    save_progress(progress_file, ReplayProgress(digest, sent, len(events)))
    try:
        await producer.start()
        first_ts = events[first].occurred_at.timestamp() if first < len(events) else 0.0
        started = time.monotonic()
        pending: list[asyncio.Future[object]] = []
        for i in range(first, len(events)):
            if stop.is_set():
                break
            event = events[i]
            due = wall_offset(event.occurred_at.timestamp(), first_ts, pace)
            wait = started + due - time.monotonic()
            if wait > 0 or len(pending) >= BATCH:
                sent = await _settle(pending, sent, progress_file, digest, len(events))
                bar.update(sent)
                wait = started + due - time.monotonic()
                if wait > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=wait)
                        break
                    except TimeoutError:
                        pass
            pending.append(
                await producer.send(
                    topics[event.event_kind],
                    encode(event),
                    key=event.customer_id.encode(),
                    partition=partition_for(event.customer_id, settings.partitions),
                )
            )
        sent = await _settle(pending, sent, progress_file, digest, len(events))
    finally:
        await producer.stop()
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    bar.finish(sent)
    return sent


async def _settle(
    pending: list[asyncio.Future[object]], sent: int, path: Path, digest: str, total: int
) -> int:
    """Wait for the batch's acknowledgements, then note them in the progress file."""
    if pending:
        await asyncio.gather(*pending)  # raises if the broker refused any of them
        sent += len(pending)
        pending.clear()
        save_progress(path, ReplayProgress(digest, sent, total))
    return sent
