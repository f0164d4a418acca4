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

from collections.abc import Iterator
from typing import Any

from faust.types import TP

from streams.partitioning import partition_for

try:  # RocksDB store: write batches of its per-partition databases
    import rocksdict
    from faust.stores.rocksdb import Store as RocksDBStore
except ImportError:  # pragma: no cover - rocksdict is a dependency
    RocksDBStore = None  # type: ignore[assignment,misc]


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
            store._db_for_partition(partition).write(batch)
            return
        self.table.data.data.update(items)

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
        self.table.data.set_persisted_offset(TP(self.changelog_topic, partition), offset)
