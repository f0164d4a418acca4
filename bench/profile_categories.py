"""Where a worker's time per event goes, from a py-spy profile taken during bench.throughput.

    python -m bench.throughput --events 120000 --customers 20000 --skip-naive &
    py-spy record -p $(pgrep -f "agents worker") -d 20 -r 200 --format raw -o worker.raw
    python -m bench.profile_categories worker.raw --cpu 154

Every sample (a collapsed stack) goes to the first category below with a marker anywhere in
it, so the categories add up to 100 %. Only the main thread's samples count: Faust's
consumer runs in a thread of its own that mostly sleeps in ``select``, and py-spy records
that sleep as if it were work. With ``--cpu`` (the worker's CPU µs per event that
bench.throughput printed for the run) each share is shown as µs of CPU per event, the
steadier figure on a shared machine; with ``--rate`` (its events/s) as µs of wall time.
docs/performance.md keeps the figures.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# (category, markers): the first category with a marker in the stack takes the sample
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    # compiled core (py-spy --native): "CPyDef_engine___Engine___next_deadline"
    ("engine: next deadline", ("Engine.next_deadline", "Engine___next_deadline")),
    ("engine: apply and advance", ("Engine.apply ", "Engine.advance ", "apply_batch ")),
    ("decode and validate input", ("decode_input ", "Pipeline.decode ")),
    ("state encode", ("encode_stored ",)),
    ("state decode", ("decode_stored ",)),
    ("outputs to the producer", ("Pipeline._send_output ", "Pipeline._produce ",
                                 "Pipeline._output_record ", "Pipeline._send ", "send_batches ")),
    ("table writes and changelog", ("Store._set ", "Table.__setitem__", "StateStore.write ")),
    ("table reads", ("Table.get ", "Store._get ", "StateStore.get_many ", "Pipeline._load")),
    ("flush, other", ("Pipeline.flush ", "Pipeline.delivered ")),
    ("metrics", ("prometheus_client",)),
    ("aiokafka producer", ("aiokafka/producer",)),
    ("aiokafka consumer and fetches", ("aiokafka/consumer", "aiokafka/conn", "aiokafka/client")),
    # not mode/services.py: every app task runs under it
    ("Faust and mode stream machinery", ("faust/streams", "faust/agents", "faust/transport",
                                         "faust/channels", "faust/topics", "mode/utils")),
    ("waiting for I/O (select)", ("selectors.py",)),
    ("glue: alignment", ("streams/alignment.py",)),
    ("glue: watermarks", ("streams/clock.py",)),
    ("glue: grouping", ("group_by_customer ",)),
    ("runtime glue, other", ("agents/runtime.py", "agents/reader.py", "agents/ingest.py")),
]  # fmt: skip
OTHER = "event loop and other"
THREAD_MARKER = "Thread._bootstrap"
"""A frame of every thread but the main one: its first Python frame (with ``--native``,
after the C frames that start the thread)."""


def categorise(raw: str, all_threads: bool = False) -> tuple[Counter[str], int]:
    """Samples per category of a py-spy ``--format raw`` file, and the total (main thread
    only unless ``all_threads``)."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, n = line.rstrip().rpartition(" ")
        if not stack or (not all_threads and THREAD_MARKER in stack):
            continue
        samples = int(n)
        total += samples
        # keep function and file, drop line numbers: "name (path:12)" -> "name (path)"
        text = re.sub(r":\d+\)", ")", stack)
        for name, markers in CATEGORIES:
            if any(marker in text for marker in markers):
                counts[name] += samples
                break
        else:
            counts[OTHER] += samples
    return counts, total


def main(argv: list[str] | None = None) -> None:
    """Print the share of each category (and µs per event with --rate)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", type=Path, help="py-spy record --format raw output")
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--cpu", type=float, help="the worker's CPU µs per event in that run")
    scale.add_argument("--rate", type=float, help="the worker's events/s during the profile")
    parser.add_argument(
        "--all-threads", action="store_true", help="count every thread, not just the main one"
    )
    args = parser.parse_args(argv)
    counts, total = categorise(args.raw.read_text(), args.all_threads)
    per_event_us = args.cpu if args.cpu else (1e6 / args.rate if args.rate else None)
    unit = "CPU" if args.cpu else "wall"
    print(
        f"{total:,} samples"
        + (f", {per_event_us:.0f} µs of {unit} per event" if per_event_us else "")
    )
    for name, n in counts.most_common():
        share = n / total
        us = f"{share * per_event_us:7.1f} µs" if per_event_us else ""
        print(f"{share:6.1%}  {us}  {name}")


if __name__ == "__main__":
    main()
