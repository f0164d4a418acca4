"""An engine without texts (``EngineConfig.texts=False``, as backtests run it) gives the same
alerts — ids, rules, statuses, times, resolutions — as one with them, with task updates
(acknowledged, done, dismissed with and without a snooze) found by their task ids."""

from __future__ import annotations

import heapq
from typing import Any

from rules.engine import Engine, EngineConfig
from rules.loader import load_rules
from schemas import AlertEvent, InputEvent, TaskEvent
from streams.settings import BUILTIN_PACKS
from streams.state import CustomerState
from tests.test_engine_golden import HOUR, Scenario, _answer, _stream

# troubled customers whose tasks get dismissed with snoozes, among other answers
TRAFFIC = Scenario("texts", seed=5, customers=20, days=90, troubled=True)


def _inputs_with_answers(events: list[InputEvent]) -> list[InputEvent]:
    """The events with the task updates a CS tool sends for the tasks of a run with texts,
    each at its time: the input both runs get."""
    engine = Engine(load_rules([BUILTIN_PACKS]), EngineConfig(), wall_clock=lambda: 0.0)
    states: dict[str, CustomerState] = {}
    updates: list[tuple[float, int, InputEvent]] = []
    out: list[InputEvent] = []

    def apply(event: InputEvent) -> None:
        out.append(event)
        state = states.setdefault(event.customer_id, CustomerState(event.customer_id))
        for task in engine.apply(state, event).outputs:
            if isinstance(task, TaskEvent) and task.status in ("open", "escalated"):
                answer = _answer(task, task.due_at.timestamp() - 4 * HOUR)
                if answer is not None:
                    heapq.heappush(updates, (answer.occurred_at.timestamp(), len(out), answer))

    for event in events:
        while updates and updates[0][0] <= event.occurred_at.timestamp():
            apply(heapq.heappop(updates)[2])
        apply(event)
    return out


def _alerts(events: list[InputEvent], texts: bool) -> tuple[list[tuple[Any, ...]], int]:
    config = EngineConfig(snapshots=False, texts=texts)
    engine = Engine(load_rules([BUILTIN_PACKS]), config, wall_clock=lambda: 0.0)
    states: dict[str, CustomerState] = {}
    outputs = []
    for event in events:
        state = states.setdefault(event.customer_id, CustomerState(event.customer_id))
        outputs += engine.apply(state, event).outputs
    end = max(e.occurred_at.timestamp() for e in events) + 60 * 86400.0
    for state in states.values():
        outputs += engine.advance(state, end).outputs
    alerts = [
        (a.rule_id, a.customer_id, a.alert_id, a.status, a.fired_at, a.resolved_at, a.resolution)
        for a in outputs
        if isinstance(a, AlertEvent)
    ]
    return alerts, sum(isinstance(o, TaskEvent) for o in outputs)


def test_alerts_without_texts_are_the_alerts_with_them() -> None:
    events = _inputs_with_answers(_stream(TRAFFIC))
    assert sum(e.event_kind == "task_update" for e in events) > 10  # snoozes and the rest
    with_texts, tasks = _alerts(events, texts=True)
    without, no_tasks = _alerts(events, texts=False)
    assert tasks > 0 and no_tasks == 0
    assert any(a[6] == "snoozed" for a in with_texts)  # a dismissal found its task
    assert without == with_texts
