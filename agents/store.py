"""The customer-state table read and written a partition's batch at a time.

Faust's ``Table.__setitem__`` writes one key with one changelog record through its own send
machinery and needs the current stream event to know the partition; the batch path knows the
partition itself. This adapter reads a batch's states with one multi-get, writes a flush's
states into the table's local store in one write batch, and records the changelog offset as
persisted once the broker has acknowledged the flush's changelog records (which the pipeline
sends in the format Faust's own recovery reads back: raw key, raw value, the state's
partition), as Faust does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from faust.types import TP

from streams.partitioning import partition_for

try:  # RocksDB store: write batches of its per-partition databases
    import rocksdict
    from faust.stores.rocksdb import Store as RocksDBStore
except ImportError:  # pragma: no cover - rocksdict is a dependency
    RocksDBStore = None  # type: ignore[assignment,misc]

log = logging.getLogger("churnguard.store")
EXIT_STORAGE = 74  # sysexits EX_IOERR: the worker stopped because its data directory failed


class StateStoreWriteError(RuntimeError):
    """The local store refused a write (disk full, I/O error); the worker must stop.

    ``exit_code`` is the worker's exit status (:data:`EXIT_STORAGE`); ``reason`` is
    ``disk_full`` or ``io_error``.
    """

    exit_code = EXIT_STORAGE

    def __init__(self, partition: int, path: str, reason: str, error: Exception) -> None:
        super().__init__(
            f"state_store_write_failed partition={partition} path={path} reason={reason}: {error}"
        )
        self.partition = partition
        self.path = path
        self.reason = reason


class StateStore:
    """Batch reads and writes of one Faust table's local store, by partition."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.changelog_topic: str = table.changelog_topic.get_topic_name()
        self._rocks = RocksDBStore is not None and isinstance(table.data, RocksDBStore)

    def get_many(self, partition: int, keys: list[bytes]) -> list[bytes | None]:
        """Stored values of ``keys`` of ``partition`` (None where absent)."""
        if not keys:
            return []
        if self._rocks:
            return list(self.table.data._db_for_partition(partition).get(keys))
        data = self.table.data.data
        return [data.get(key) for key in keys]

    def write(self, partition: int, items: list[tuple[bytes, bytes]]) -> None:
        """Write ``items`` (key, value) of ``partition`` to the local store at once."""
        if self._rocks:
            store = self.table.data
            batch = rocksdict.WriteBatch(raw_mode=True)
            for key, value in items:
                batch.put(key, value)
            try:
                store._db_for_partition(partition).write(batch)
            except Exception as exc:  # rocksdict raises a bare Exception("IO error: …")
                raise self._write_failed(partition, exc) from exc
            return
        self.table.data.data.update(items)

    def _write_failed(self, partition: int, exc: Exception) -> StateStoreWriteError:
        """Log a refused write once, as a structured critical line, and say why."""
        reason = "disk_full" if "No space left" in str(exc) else "io_error"
        path = str(self.table.data.partition_path(partition))
        log.critical(
            "state_store_write_failed partition=%d path=%s reason=%s error=%r "
            "action=stop_worker exit_code=%d (nothing of it committed: the input is read "
            "again after a restart)",
            partition,
            path,
            reason,
            exc,
            EXIT_STORAGE,
        )
        return StateStoreWriteError(partition, path, reason, exc)

    def items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Every (customer key, stored state) of ``partition`` in the local store."""
        if self._rocks:
            offset_key = self.table.data.offset_key
            for key, value in self.table.data._db_for_partition(partition).items():
                if key != offset_key and value is not None:
                    yield key, value
            return
        partitions = self.table.partitions or 1
        for key, value in list(self.table.data.data.items()):
            if value is not None and partition_for(key.decode(), partitions) == partition:
                yield key, value

    def persisted_offset(self, partition: int) -> int | None:
        """The last changelog offset the local store holds for ``partition`` (None: unknown)."""
        offset = self.table.data.persisted_offset(TP(self.changelog_topic, partition))
        return None if offset is None else int(offset)

    def persisted(self, partition: int, offset: int) -> None:
        """Remember that the changelog of ``partition`` is written up to ``offset``."""
        try:
            self.table.data.set_persisted_offset(TP(self.changelog_topic, partition), offset)
        except Exception as exc:  # the RocksDB store's put: disk full, I/O error
            if not self._rocks:
                raise
            raise self._write_failed(partition, exc) from exc
