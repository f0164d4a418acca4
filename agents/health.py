"""What state the running worker is in: ready or not (and why), recovery, table size.

``/readyz`` and the ``churnguard_ready`` gauge give the same answer: a worker is ready once
Faust's group has assigned its partitions, the state table is recovered from the changelog
and the input reader reads the inputs of those partitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.reader import InputReader
from streams.partitioning import partition_for

try:  # RocksDB store: one database per partition
    from faust.stores.rocksdb import Store as RocksDBStore
except ImportError:  # pragma: no cover - rocksdict is a dependency
    RocksDBStore = None  # type: ignore[assignment,misc]


@dataclass(frozen=True)
class Readiness:
    """The answer of ``/readyz``: ready or not, why not, and the partitions owned."""

    ready: bool
    reason: str
    partitions: list[int]

    def as_json(self) -> dict[str, Any]:
        """The JSON body of ``/readyz``."""
        body: dict[str, Any] = {"ready": self.ready, "partitions": self.partitions}
        if not self.ready:
            body["reason"] = self.reason
        return body


def decide_readiness(
    *,
    recovering: bool,
    remaining: int,
    assigned: bool,
    reading: bool,
    partitions: list[int],
    broker_silent_s: float = 0.0,
    broker_unreachable_s: float = float("inf"),
) -> Readiness:
    """Ready when the table is recovered, the partitions assigned, the reader running and the
    broker answering its fetches (silent for less than ``broker_unreachable_s``)."""
    if assigned and broker_silent_s >= broker_unreachable_s:
        return Readiness(
            False,
            f"broker unreachable: no fetch answered for {broker_silent_s:.0f} s "
            "(retrying; the worker resumes by itself when the broker is back)",
            partitions,
        )
    if recovering:
        return Readiness(
            False,
            f"recovering the state table from its changelog ({remaining} records remaining)",
            partitions,
        )
    if not assigned:
        return Readiness(
            False, "waiting for the consumer group to assign partitions (rebalancing)", partitions
        )
    if not reading:
        return Readiness(False, "the input reader has not started yet", partitions)
    return Readiness(True, "", partitions)


class WorkerProbe:
    """Reads readiness, recovery progress and table size from a running worker."""

    def __init__(self, app: Any, reader: InputReader) -> None:
        self.app = app
        self.reader = reader

    def readiness(self) -> Readiness:
        """Whether the worker is ready now, and why not."""
        return decide_readiness(
            recovering=self.recovering(),
            remaining=sum(self.recovery_remaining().values()),
            assigned=self.reader.active,
            reading=self.reader.consumer is not None,
            partitions=self.owned(),
            broker_silent_s=self.reader.broker_silence_s() if self.reader.active else 0.0,
            broker_unreachable_s=self.reader.settings.broker_unreachable_s,
        )

    def ready(self) -> bool:
        """True when :meth:`readiness` says ready."""
        return self.readiness().ready

    def owned(self) -> list[int]:
        """Partition numbers whose inputs this worker reads now."""
        return list(self.reader.owned) if self.reader.active else []

    def recovering(self) -> bool:
        """True while Faust recovers tables (an assignment is not usable before)."""
        recovery = self._recovery()
        return bool(recovery is not None and recovery.in_recovery)

    def recovery_remaining(self) -> dict[int, int]:
        """Changelog records still to be read, per partition under active recovery."""
        recovery = self._recovery()
        if recovery is None or not recovery.in_recovery:
            return {}
        remaining: dict[int, int] = {}
        for tp, records in recovery.active_remaining().items():
            remaining[tp.partition] = remaining.get(tp.partition, 0) + max(0, int(records))
        return remaining

    def table_customers(self) -> dict[int, int]:
        """Customers in the local state table, per owned partition."""
        owned = self.owned()
        if not owned:
            return {}
        table = self.reader.pipeline.table
        store = table.data
        if RocksDBStore is not None and isinstance(store, RocksDBStore):
            dbs = store._dbs  # only the databases already open: never open one here
            return {
                p: int(dbs[p].property_int_value("rocksdb.estimate-num-keys") or 0)
                for p in owned
                if p in dbs
            }
        # the in-memory store (tests, demos) keeps one dict for every partition
        counts = dict.fromkeys(owned, 0)
        partitions = self.reader.settings.partitions
        for key in list(store.data):
            p = partition_for(key.decode(errors="replace"), partitions)
            if p in counts:
                counts[p] += 1
        return counts

    def _recovery(self) -> Any:
        tables = getattr(self.app, "tables", None)
        return getattr(tables, "recovery", None)
