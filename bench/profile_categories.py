"""Where a worker's time per event goes, from a py-spy profile taken during bench.throughput.

    python -m bench.throughput --events 120000 --customers 20000 --skip-naive &
    py-spy record -p $(pgrep -f "agents worker") -d 20 -r 200 --format raw -o worker.raw
    python -m bench.profile_categories worker.raw --rate 4264

Every sample (a collapsed stack) goes to the first category below with a marker anywhere in
it, so the categories add up to 100 %; with ``--rate`` (the worker's events/s in that run)
each share is also shown as µs of wall time per event. docs/performance.md keeps the figures.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# (category, markers): the first category with a marker in the stack takes the sample
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("engine: next deadline", ("Engine.next_deadline",)),
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
    ("runtime glue", ("agents/runtime.py", "agents/reader.py", "streams/alignment.py",
                      "streams/clock.py", "agents/ingest.py")),
]  # fmt: skip
OTHER = "event loop and other"


def categorise(raw: str) -> tuple[Counter[str], int]:
    """Samples per category of a py-spy ``--format raw`` file, and the total."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, n = line.rstrip().rpartition(" ")
        if not stack:
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
    parser.add_argument("--rate", type=float, help="the worker's events/s during the profile")
    args = parser.parse_args(argv)
    counts, total = categorise(args.raw.read_text())
    per_event_us = 1e6 / args.rate if args.rate else None
    print(f"{total:,} samples" + (f", {per_event_us:.0f} µs per event" if per_event_us else ""))
    for name, n in counts.most_common():
        share = n / total
        us = f"{share * per_event_us:7.1f} µs" if per_event_us else ""
        print(f"{share:6.1%}  {us}  {name}")


if __name__ == "__main__":
    main()
