"""Handing batches to the producer without waiting: order per topic partition, errors, bound."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agents.producer import Handoff


class SlowProducer:
    """An accumulator that takes a topic partition's next batch only after ``release``."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.handed: list[tuple[str, int, str]] = []
        self.gates: dict[tuple[str, int], asyncio.Event] = {}
        self.fail = fail or set()

    def release(self, topic: str, partition: int) -> None:
        self.gates.setdefault((topic, partition), asyncio.Event()).set()

    async def send_batch(self, batch: str, topic: str, partition: int) -> asyncio.Future[Any]:
        gate = self.gates.setdefault((topic, partition), asyncio.Event())
        if any(t == topic and p == partition for t, p, _ in self.handed):
            await gate.wait()  # one undrained batch per topic partition
            gate.clear()
        if batch in self.fail:
            raise RuntimeError(f"cannot send {batch}")
        self.handed.append((topic, partition, batch))
        done = asyncio.get_running_loop().create_future()
        done.set_result(type("Meta", (), {"offset": len(self.handed)})())
        return done


async def test_send_returns_at_once_and_hands_over_in_order_per_partition() -> None:
    producer, handoff = SlowProducer(), Handoff()
    sent = [await handoff.send(producer, f"b{i}", "t", 0, 1) for i in range(3)]
    other = await handoff.send(producer, "x", "t", 1, 1)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [b for _, _, b in producer.handed] == ["b0", "x"]  # b1 waits for b0 to drain
    assert not sent[1].future.done()
    for _ in range(2):
        producer.release("t", 0)
        await asyncio.sleep(0.01)
    assert [b for t, p, b in producer.handed if p == 0] == ["b0", "b1", "b2"]
    await asyncio.gather(*(s.future for s in [*sent, other]))


async def test_an_error_reaches_the_batch_and_the_next_one_still_goes() -> None:
    producer, handoff = SlowProducer(fail={"bad"}), Handoff()
    bad = await handoff.send(producer, "bad", "t", 0, 1)
    good = await handoff.send(producer, "good", "t", 0, 1)
    with pytest.raises(RuntimeError, match="cannot send bad"):
        await bad.future
    assert (await good.future).offset == 1


async def test_the_caller_waits_when_too_many_batches_wait() -> None:
    producer, handoff = SlowProducer(), Handoff(max_waiting=2)
    await handoff.send(producer, "b0", "t", 0, 1)  # handed over at once
    await asyncio.sleep(0)
    await handoff.send(producer, "b1", "t", 0, 1)
    await handoff.send(producer, "b2", "t", 0, 1)
    third = asyncio.ensure_future(handoff.send(producer, "b3", "t", 0, 1))
    await asyncio.sleep(0.01)
    assert not third.done()
    producer.release("t", 0)
    await asyncio.sleep(0.01)
    assert third.done()
