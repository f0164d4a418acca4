"""The cache of persisted states between flushes: take moves out, put keeps the newest."""

from __future__ import annotations

from agents.state_cache import StateCache
from streams.state import CustomerState


def states(*ids: str) -> dict[str, CustomerState]:
    return {cid: CustomerState(cid) for cid in ids}


def test_take_moves_a_state_out_once() -> None:
    cache = StateCache(10)
    put = states("a", "b")
    cache.put(0, put)
    assert cache.take(0, "a") is put["a"]
    assert cache.take(0, "a") is None
    assert cache.take(1, "b") is None  # another partition's: kept
    assert len(cache) == 1
    assert cache.take(0, "b") is put["b"]


def test_the_least_recently_put_go_first_whatever_their_partition() -> None:
    cache = StateCache(3)
    cache.put(1, states("x"))
    cache.put(0, states("a", "b"))
    cache.put(0, states("c"))  # 4 > 3: "x" goes
    assert cache.take(1, "x") is None
    assert all(cache.take(0, c) is not None for c in ("a", "b", "c"))


def test_a_state_put_again_counts_as_recent() -> None:
    cache = StateCache(2)
    cache.put(0, states("a", "b"))
    cache.put(0, states("a"))
    cache.put(0, states("c"))  # "b" is now the oldest
    assert cache.take(0, "b") is None
    assert cache.take(0, "a") is not None and cache.take(0, "c") is not None


def test_a_put_larger_than_the_capacity_keeps_the_newest() -> None:
    cache = StateCache(2)
    cache.put(0, states("a", "b", "c"))
    assert len(cache) == 2
    assert cache.take(0, "a") is None
    assert cache.take(0, "c") is not None


def test_forget_drops_a_partition_and_capacity_zero_keeps_nothing() -> None:
    cache = StateCache(10)
    cache.put(0, states("a"))
    cache.put(1, states("b"))
    cache.forget(0)
    assert len(cache) == 1 and cache.take(0, "a") is None
    off = StateCache(0)
    off.put(0, states("a"))
    assert len(off) == 0 and off.take(0, "a") is None
