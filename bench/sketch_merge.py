"""Memory and time of merging per-partition RFM sketches into quintile cut points.

Pure and in-process (no broker). Synthetic customers (seeded: 60 % with frequency 0 and
monetary 0, whole-day recency with ~5 % ordered today, lognormal average repeat order value)
are split round-robin over the partitions. Each partition's ``streams.sketch.RfmSketch`` is
built and serialised up front, as a worker would publish it. Then, each measured the same way
(time without tracing, best of ``--repeat``; peak memory with ``tracemalloc`` in a separate
run, counted from the start of the step, so the inputs are not counted):

* ``sketch merge``: ``merge_all`` of the serialised summaries (decode + merge) + ``cut_points``;
* ``exact, numpy``: the baseline — every partition publishes its raw values (3 float64 arrays);
  concatenate the 3 × N values, sort them, pick the same ranks (numpy ``method="lower"``);
* ``exact, lists``: the same with Python lists of floats and ``list.sort``.

Printed: a table (bytes published per partition, seconds, peak MiB), the merge peak against
the 10 MiB budget (PASS/FAIL), the memory ratios, and the largest relative error of the
sketched cut points against the exact ones.

    python -m bench.sketch_merge [--customers 1000000] [--partitions 8] [--json-out PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import tracemalloc
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from streams.sketch import QUANTILES, RELATIVE_ACCURACY, CutPoints, RfmSketch, cut_points, merge_all

SEED = 20261123
AS_OF = 1_767_225_600.0  # 2026-01-01T00:00:00Z, the summaries' event time
BUDGET_MIB = 10.0
MIB = 1024 * 1024
DIMENSIONS = ("recency", "frequency", "monetary")

Floats = npt.NDArray[np.float64]
Cuts3 = tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]
T = TypeVar("T")


def generate(customers: int, seed: int = SEED) -> tuple[Floats, Floats, Floats]:
    """Recency (whole days), frequency (repeat purchase days), monetary (avg repeat value)."""
    rng = np.random.default_rng(seed)
    frequency = np.where(rng.random(customers) < 0.6, 0.0, rng.geometric(0.3, customers) * 1.0)
    recency = np.where(
        frequency > 0,
        np.floor(rng.exponential(20.0, customers)),
        np.floor(rng.exponential(150.0, customers)),
    )
    monetary = np.where(frequency > 0, rng.lognormal(np.log(45.0), 1.0, customers), 0.0)
    return recency, frequency, monetary


def build_summaries(columns: tuple[Floats, Floats, Floats], partitions: int) -> list[bytes]:
    """Each partition's serialised sketch (what a worker publishes)."""
    customers = len(columns[0])
    summaries = []
    for p in range(partitions):
        sketch = RfmSketch(p, AS_OF)
        add = sketch.add
        r, f, m = (c[p:customers:partitions].tolist() for c in columns)
        for values in zip(r, f, m, strict=True):
            add(*values)
        summaries.append(sketch.to_bytes())
    return summaries


def raw_parts(columns: tuple[Floats, Floats, Floats], partitions: int) -> list[list[bytes]]:
    """Each partition's raw values as float64 bytes, one per dimension (the exact baseline)."""
    n = len(columns[0])
    return [[c[p:n:partitions].tobytes() for c in columns] for p in range(partitions)]


def ranks(n: int) -> list[int]:
    """The sorted positions of the cut points (numpy's ``method="lower"``, DDSketch's rank)."""
    return [int(q * (n - 1)) for q in QUANTILES]


def merge_step(summaries: list[bytes]) -> CutPoints:
    """Decode and merge every partition's sketch, then compute the cut points."""
    cuts = cut_points(merge_all(summaries))
    assert cuts is not None
    return cuts


def exact_numpy(parts: list[list[bytes]]) -> Cuts3:
    """All 3 × N values in numpy arrays, sorted: the exact cut points."""
    columns = [
        np.concatenate([np.frombuffer(part[d], dtype=np.float64) for part in parts])
        for d in range(len(DIMENSIONS))
    ]
    for column in columns:
        column.sort()
    at = ranks(len(columns[0]))
    r, f, m = (tuple(float(c[i]) for i in at) for c in columns)
    return r, f, m


def exact_lists(parts: list[list[bytes]]) -> Cuts3:
    """All 3 × N values in Python lists of floats, sorted: the exact cut points."""
    columns: list[list[float]] = [[], [], []]
    for part in parts:
        for d, column in enumerate(columns):
            values = array("d")
            values.frombytes(part[d])
            column.extend(values.tolist())
    for column in columns:
        column.sort()
    at = ranks(len(columns[0]))
    r, f, m = (tuple(c[i] for i in at) for c in columns)
    return r, f, m


def measure(repeat: int, step: Callable[[], T]) -> tuple[T, float, float]:
    """``step``'s result, best time of ``repeat`` untraced runs, and its traced peak in MiB."""
    best = float("inf")
    result: T | None = None
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        result = step()
        best = min(best, time.perf_counter() - started)
        del result
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, best, (peak - base) / MIB


def relative_error(approx: float, exact: float) -> float:
    if exact == 0:
        return 0.0 if approx == 0 else float("inf")
    return abs(approx - exact) / abs(exact)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sketch_merge",
        description=(
            "Peak memory and time of merging per-partition RFM sketches (streams.sketch) into "
            "quintile cut points, against exact quantiles from all raw values (numpy arrays "
            "and Python lists, sorted). In-process, no broker; the merge must stay under "
            f"{BUDGET_MIB:g} MiB."
        ),
    )
    parser.add_argument(
        "--customers", type=int, default=1_000_000, help="customers (default 1000000)"
    )
    parser.add_argument(
        "--partitions", type=int, default=8, help="partitions summarised (default 8)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="untraced runs per timing, best kept (default 3)"
    )
    parser.add_argument(
        "--skip-lists", action="store_true", help="skip the Python-lists baseline (slowest)"
    )
    parser.add_argument("--json-out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.customers < 1 or args.partitions < 1 or args.repeat < 1:
        parser.error("--customers, --partitions and --repeat must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the figures; exit code 1 when the merge is over budget."""
    args = parse_args(argv)
    columns = generate(args.customers)

    started = time.perf_counter()
    summaries = build_summaries(columns, args.partitions)
    build_s = time.perf_counter() - started
    parts = raw_parts(columns, args.partitions)
    del columns

    cuts, merge_s, merge_mib = measure(args.repeat, lambda: merge_step(summaries))
    exact, numpy_s, numpy_mib = measure(args.repeat, lambda: exact_numpy(parts))
    stages: dict[str, dict[str, Any]] = {
        "sketch merge": {
            "bytes_per_partition": sum(map(len, summaries)) / len(summaries),
            "seconds": merge_s,
            "peak_mib": merge_mib,
        },
        "exact, numpy": {
            "bytes_per_partition": sum(len(b) for part in parts for b in part) / len(parts),
            "seconds": numpy_s,
            "peak_mib": numpy_mib,
        },
    }
    if not args.skip_lists:
        exact_l, lists_s, lists_mib = measure(1, lambda: exact_lists(parts))
        assert exact_l == exact
        stages["exact, lists"] = {
            **stages["exact, numpy"],
            "seconds": lists_s,
            "peak_mib": lists_mib,
        }

    errors = {
        dim: max(relative_error(a, e) for a, e in zip(getattr(cuts, dim), ex, strict=True))
        for dim, ex in zip(DIMENSIONS, exact, strict=True)
    }
    passed = merge_mib <= BUDGET_MIB
    ratios = {
        "merge / exact numpy, memory": merge_mib / numpy_mib,
        "merge / exact numpy, time": merge_s / numpy_s,
        "merge / exact numpy, bytes per partition": (
            stages["sketch merge"]["bytes_per_partition"]
            / stages["exact, numpy"]["bytes_per_partition"]
        ),
    }
    if "exact, lists" in stages:
        ratios["merge / exact lists, memory"] = merge_mib / stages["exact, lists"]["peak_mib"]

    print(
        f"customers: {args.customers:,} over {args.partitions} partitions; sketches built and "
        f"serialised in {build_s:.1f} s (not part of the merge)"
    )
    print(f"{'step':<14} {'bytes/partition':>16} {'seconds':>9} {'peak MiB':>9}")
    for name, s in stages.items():
        print(
            f"{name:<14} {s['bytes_per_partition']:>16,.0f} {s['seconds']:>9.4f} "
            f"{s['peak_mib']:>9.2f}"
        )
    print(
        f"merge peak {merge_mib:.2f} MiB vs budget {BUDGET_MIB:g} MiB: "
        f"{'PASS' if passed else 'FAIL'}"
    )
    for name, value in ratios.items():
        print(f"ratio {name:<41} {value:8.4f}")
    print(
        "cut points, max relative error vs exact (bound "
        f"{RELATIVE_ACCURACY:.0%}): " + ", ".join(f"{dim} {err:.3%}" for dim, err in errors.items())
    )
    for dim, ex in zip(DIMENSIONS, exact, strict=True):
        sketched = ", ".join(f"{v:.4g}" for v in getattr(cuts, dim))
        exact_s = ", ".join(f"{v:.4g}" for v in ex)
        print(f"  {dim:<9} sketch [{sketched}]  exact [{exact_s}]")

    if args.json_out is not None:
        result = {
            "params": {
                "customers": args.customers,
                "partitions": args.partitions,
                "repeat": args.repeat,
                "seed": SEED,
                "relative_accuracy": RELATIVE_ACCURACY,
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "build_s": build_s,
            "stages": stages,
            "ratios": ratios,
            "budget_mib": BUDGET_MIB,
            "pass": passed,
            "max_relative_error": errors,
            "cut_points": {
                "sketch": cuts.to_dict(),
                "exact": dict(zip(DIMENSIONS, exact, strict=True)),
            },
        }
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
