"""Garbage-collector tuning for the long runs: the worker and the in-process backtest."""

from __future__ import annotations

import gc
import logging

# with a young collection every gen0_threshold allocations: a middle one every 20 of those,
# a full one after 100 middle ones (and only when Python's own heuristic agrees)
GC_GEN1_THRESHOLD = 20
GC_GEN2_THRESHOLD = 100
log = logging.getLogger("churnguard.gc")


def tune_gc(gen0_threshold: int) -> None:
    """Freeze what was allocated so far and collect the young generation less often.

    A worker or a backtest keeps many long-lived objects (customer states, caches, the
    history being replayed, Faust's and aiokafka's own), and with Python's default of a
    young collection every 700 allocations the older generations are scanned again and
    again: in the throughput bench this tuning made the worker 14–28 % faster, and the CDNOW
    backtest 16 % (docs/performance.md). ``gen0_threshold`` 0 leaves the collector as it is.
    """
    if gen0_threshold <= 0:
        return
    gc.collect()
    gc.freeze()  # what exists now is never garbage: full collections skip it
    gc.set_threshold(gen0_threshold, GC_GEN1_THRESHOLD, GC_GEN2_THRESHOLD)
    log.info("gc_tuned frozen_objects=%d thresholds=%s", gc.get_freeze_count(), gc.get_threshold())
