"""A backtest split over parts of the customers gives the run of all of them in one."""

from __future__ import annotations

import multiprocessing
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.cut_feed import CutFeed
from rules.backtest import Episode, Population, Run, cut_schedule, merge_runs, run_backtest
from rules.engine import Engine, EngineConfig
from rules.loader import load_rules
from schemas import decode_input
from streams.features import purchase_history
from streams.settings import BUILTIN_PACKS
from streams.sketch import CutPoints, RfmSketch, cut_points
from streams.state import CustomerState, apply_event, day_of
from streams.synthetic import generate, plan_customers

START = datetime(2026, 1, 5, tzinfo=UTC)


class Recording(Engine):
    """The engine, noting every set of cut points it is given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.given: list[CutPoints | None] = []

    def set_cut_points(self, cuts: CutPoints | None) -> None:
        self.given.append(cuts)
        super().set_cut_points(cuts)


def _events(customers: int = 40, days: int = 60) -> list[Any]:
    records = generate(plan_customers(customers, seed=3), start=START, days=days, seed=3)
    events = [decode_input(r.topic_kind, orjson.dumps(r.value)) for r in records]
    return sorted(events, key=lambda e: e.occurred_at)


FREQUENT = """\
- id: frequent-buyer
  when: rfm_f_score >= 4
  severity: info
  summary: "buys more often than most"
"""
"""A rule that reads an RFM score: its alerts depend on the population's cut points."""


@pytest.fixture
def engine(tmp_path: Path) -> Callable[[], Recording]:
    extra = tmp_path / "frequent.yaml"
    extra.write_text(FREQUENT, encoding="utf-8")
    rules = load_rules([BUILTIN_PACKS, extra])
    return lambda: Recording(rules, EngineConfig(snapshots=False), lambda: 0.0)


def _seen(run: Run) -> tuple[Any, ...]:
    episodes = [
        (e.rule_id, e.customer_id, e.alert_id, e.fired_at, e.resolved_at) for e in run.episodes
    ]
    return episodes, run.health, run.first_seen, run.applied, run.evaluations, run.sweeps


def test_the_schedule_holds_the_cut_points_a_whole_run_sets(
    engine: Callable[[], Recording],
) -> None:
    events = _events()
    until = events[-1].occurred_at.timestamp() + 86400.0
    whole = engine()
    run_backtest(whole, events, until=until)
    schedule = cut_schedule(events, until=until, config=whole.config.state)
    assert whole.given and list(schedule.values()) == whole.given
    assert any(cuts is not None for cuts in whole.given)


def test_two_parts_with_the_schedule_give_the_whole_run(engine: Callable[[], Recording]) -> None:
    events = _events()
    until = events[-1].occurred_at.timestamp() + 86400.0
    whole = merge_runs([run_backtest(engine(), events, until=until)])
    schedule = cut_schedule(events, until=until, config=EngineConfig().state)
    start = events[0].occurred_at.timestamp()
    parts = [
        run_backtest(
            engine(),
            [e for e in events if zlib.crc32(e.customer_id.encode()) % 2 == k],
            until=until,
            start=start,
            cuts=schedule,
        )
        for k in range(2)
    ]
    assert all(part.applied for part in parts)
    assert _seen(merge_runs(parts)) == _seen(whole)
    assert any(e.rule_id == "frequent-buyer" for e in whole.episodes)


def test_the_population_counts_each_customer_once_with_its_newest_orders() -> None:
    """Population keeps one profile per customer, updated as orders arrive: its sketch is the
    sketch of every customer's current purchase history, added one by one."""
    events = _events(customers=80, days=120)
    config = EngineConfig().state
    states: dict[str, CustomerState] = {}
    population = Population()
    checked = 0
    for i, event in enumerate(events):
        state = states.setdefault(event.customer_id, CustomerState(event.customer_id))
        apply_event(state, event, config)
        population.update(state)  # again and again for the same customer
        if i % 500 == 499:
            now = event.occurred_at.timestamp()
            expected = RfmSketch(as_of=now)
            for s in states.values():
                history = purchase_history(s, 0.0)
                if history is not None and s.rfm_last_day is not None:
                    expected.add(max(0, day_of(now) - s.rfm_last_day), history[0], history[3])
            assert cut_points(population.sketch(now)) == cut_points(expected)
            checked += expected.count
    assert checked > 0


def _part_from_feed(
    rules_engine: Engine, events: list[Any], until: float, feed: CutFeed, k: int, out: Any
) -> None:
    start = events[0].occurred_at.timestamp()
    mine = [e for e in events if zlib.crc32(e.customer_id.encode()) % 2 == k]
    run = run_backtest(rules_engine, mine, until=until, start=start, cuts=feed.reader(k))
    out.put((k, _seen(run)))


def test_parts_in_processes_fed_the_cut_points_as_they_are_worked_out_give_the_whole_run(
    engine: Callable[[], Recording],
) -> None:
    events = _events()
    until = events[-1].occurred_at.timestamp() + 86400.0
    whole = engine()
    expected = _seen(merge_runs([run_backtest(whole, events, until=until)]))
    context = multiprocessing.get_context("fork")
    feed, out = CutFeed(context, 2), context.Queue()
    parts = [
        context.Process(target=_part_from_feed, args=(engine(), events, until, feed, k, out))
        for k in range(2)
    ]
    for process in parts:  # started before the cut points exist, as in the CLI
        process.start()
    schedule = cut_schedule(events, until=until, config=whole.config.state, on_cuts=feed.send)
    feed.close()
    seen = dict(out.get(timeout=60) for _ in parts)
    for process in parts:
        process.join(timeout=10)
        assert process.exitcode == 0
    assert list(schedule.values()) == whole.given
    runs = [Run() for _ in parts]
    for k, run in enumerate(runs):
        episodes, run.health, run.first_seen, run.applied, run.evaluations, run.sweeps = seen[k]
        run.episodes = [Episode(*e) for e in episodes]
    assert _seen(merge_runs(runs)) == expected


def test_streamed_cut_points_answer_only_for_the_sweeps_that_set_them() -> None:
    context = multiprocessing.get_context("fork")
    feed = CutFeed(context, 1)
    cuts = CutPoints((1.0, 2.0, 3.0, 4.0), (0.0, 0.0, 1.0, 2.0), (5.0, 6.0, 7.0, 8.0), 9, 100.0)
    feed.send(100.0, cuts)
    feed.send(200.0, None)
    feed.close()
    streamed = feed.reader(0)
    assert 50.0 not in streamed and 100.0 in streamed and 150.0 not in streamed
    assert streamed[100.0] == cuts and streamed[200.0] is None
    assert dict(streamed) == {100.0: cuts, 200.0: None}
