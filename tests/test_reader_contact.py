"""When the input reader calls the broker unreachable (pure: a stand-in consumer, no broker)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from agents.reader import InputReader, tick_due, tick_phases
from streams.settings import Settings

TP0 = TopicPartition("crm.logins", 0)


class Consumer:
    """What ``_note_contact`` reads of aiokafka's consumer: assignment and fetch answer times."""

    def __init__(self) -> None:
        self.polled: dict[TopicPartition, int | None] = {TP0: None}

    def assignment(self) -> set[TopicPartition]:
        return set(self.polled)

    def last_poll_timestamp(self, tp: TopicPartition) -> int | None:
        return self.polled[tp]


def _reader(owned: list[int]) -> InputReader:
    reader = InputReader.__new__(InputReader)
    reader.settings = Settings(broker_unreachable_s=15.0)
    reader.owned = owned
    reader.paused = set()
    reader.last_contact = 0.0
    reader._last_poll_ms = 0
    reader.unreachable = False
    reader.silent_since = 0.0
    return reader


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    now = SimpleNamespace(t=0.0)
    monkeypatch.setattr("agents.reader.time.monotonic", lambda: now.t)
    return now


def test_silence_is_logged_once_and_the_answer_again(
    clock: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    reader, consumer = _reader([0]), Consumer()
    caplog.set_level(logging.INFO, "churnguard.reader")
    for t in range(1, 40):  # no fetch answered for 39 s
        clock.t = float(t)
        reader._note_contact(consumer, False)  # type: ignore[arg-type]
    assert reader.broker_silence_s() == 39.0
    assert [r.getMessage().split()[0] for r in caplog.records] == ["broker_unreachable"]
    consumer.polled[TP0] = 1_700_000_000_000  # an (empty) fetch answer
    reader._note_contact(consumer, False)  # type: ignore[arg-type]
    assert reader.broker_silence_s() == 0.0
    assert caplog.records[-1].getMessage().startswith("broker_reachable_again silent_s=39.0")


@pytest.mark.parametrize("state", ["no partitions owned", "a partition paused"])
def test_an_idle_or_busy_reader_is_not_cut_off(clock: SimpleNamespace, state: str) -> None:
    reader: Any = _reader([] if state == "no partitions owned" else [0])
    if state == "a partition paused":
        reader.paused = {TP0}
    clock.t = 100.0
    reader._note_contact(Consumer(), False)
    assert reader.broker_silence_s() == 0.0 and not reader.unreachable


def test_partitions_tick_in_their_own_phases_even_after_a_slow_round() -> None:
    tick, owned = 1.0, [0, 1, 2, 3]
    last = tick_phases(owned, 100.0, tick)
    rounds: list[list[int]] = []
    now = 100.0
    while now < 110.0:
        now += 0.3 if 104.0 < now < 104.5 else 0.02  # a slow round at 104 s
        ticked = []
        for p in owned:
            due = tick_due(last[p], now, tick)
            if due is not None:
                last[p] = due
                ticked.append(p)
        if ticked:
            rounds.append(ticked)
    assert all(len(ticked) == 1 for ticked in rounds)  # never two in one round
    # once a second each: 101..110 s for the first, then 101.25..109.25 s and so on
    assert [len([r for r in rounds if p in r]) for p in owned] == [10, 9, 9, 9]
    assert sorted(round(last[p] % tick, 2) for p in owned) == [0.0, 0.25, 0.5, 0.75]
