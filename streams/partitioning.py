"""Which partition a customer belongs to: Kafka's default (murmur2) partitioner, as Java uses."""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2

CACHED_CUSTOMERS = 1 << 17


@lru_cache(maxsize=CACHED_CUSTOMERS)  # murmur2 in pure Python costs microseconds per event
def partition_for(customer_id: str, partitions: int) -> int:
    """Partition of ``customer_id`` among ``partitions``, as Kafka's default partitioner picks."""
    return (murmur2(customer_id.encode()) & 0x7FFFFFFF) % partitions


@lru_cache(maxsize=CACHED_CUSTOMERS)
def partition_of_key(key: bytes, partitions: int) -> int:
    """Partition of a record key among ``partitions``, as Kafka's default partitioner picks."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
