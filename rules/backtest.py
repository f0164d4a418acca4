"""History through the engine in-process, in event time: what fired, when, for whom.

The engine is driven as the worker drives it in event-time mode, without a broker: events in
time order, each customer's next deadline noted in a :class:`DeadlineIndex`, and a sweep at
every ``step`` of event time that advances the due customers (their alerts fire at the
deadline itself, so ``fired_at`` and ``alert_id`` do not depend on the step). At each sweep
the RFM cut points are recomputed from the whole population, as the workers' merged sketches
would give them. Deterministic: the same events and rules give the same :class:`Run`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rules.engine import Engine, Result
from rules.loader import RuleSet
from schemas import AlertEvent, InputEvent
from streams.deadlines import DeadlineIndex
from streams.features import purchase_history
from streams.sketch import CutPoints, RfmSketch, cut_points
from streams.state import CustomerState, StateConfig, apply_event, day_of

HEALTH_RULE = "health-score"
"""The rule id under which the health score's low episodes are reported."""


@dataclass
class Episode:
    """One firing of a rule for a customer (event-time epoch seconds)."""

    rule_id: str
    customer_id: str
    alert_id: str
    fired_at: float
    resolved_at: float | None = None


@dataclass
class Run:
    """What a backtest run saw and produced."""

    first_seen: dict[str, float] = field(default_factory=dict)  # customer -> first event time
    episodes: list[Episode] = field(default_factory=list)  # in the order they fired
    health: dict[str, int] = field(default_factory=dict)  # customer -> health at the end
    applied: int = 0
    duplicates: int = 0
    evaluations: int = 0
    errors: int = 0
    sweeps: int = 0


@dataclass
class _Tracker:
    run: Run
    health_below: int | None
    open_alerts: dict[str, Episode] = field(default_factory=dict)
    low_health: dict[str, Episode] = field(default_factory=dict)

    def note(self, state: CustomerState, result: Result) -> None:
        run = self.run
        run.evaluations += result.evaluations
        run.errors += len(result.errors)
        for out in result.outputs:
            if not isinstance(out, AlertEvent) or out.status == "notice":
                continue
            if out.status == "firing":
                if out.alert_id in self.open_alerts:
                    continue
                episode = Episode(
                    out.rule_id, out.customer_id, out.alert_id, out.fired_at.timestamp()
                )
                self.open_alerts[out.alert_id] = episode
                run.episodes.append(episode)
            else:
                done = self.open_alerts.pop(out.alert_id, None)
                if done is not None and out.resolved_at is not None:
                    done.resolved_at = out.resolved_at.timestamp()
        if self.health_below is None or state.evaluated_at is None:
            return
        health = state.scores.get("health")
        if not isinstance(health, int):
            return
        cid = state.customer_id
        low = self.low_health.get(cid)
        if health < self.health_below and low is None:
            episode = Episode(
                HEALTH_RULE, cid, f"hs-{cid}-{state.evaluated_at:.0f}", state.evaluated_at
            )
            self.low_health[cid] = episode
            run.episodes.append(episode)
        elif health >= self.health_below and low is not None:
            low.resolved_at = state.evaluated_at
            del self.low_health[cid]


class Population:
    """Every customer's RFM inputs, for the population's cut points at any time: kept per
    customer and counted by value, and worked out again only for customers with new events."""

    def __init__(self) -> None:
        self._profiles: dict[str, tuple[int, float, float]] = {}  # last order day, f, m
        self._last_days: Counter[int] = Counter()
        self._frequency: Counter[float] = Counter()
        self._monetary: Counter[float] = Counter()

    def update(self, state: CustomerState) -> None:
        """Take the customer's purchase history as it is now."""
        old = self._profiles.pop(state.customer_id, None)
        if old is not None:
            _uncount(self._last_days, old[0])
            _uncount(self._frequency, old[1])
            _uncount(self._monetary, old[2])
        history = purchase_history(state, 0.0)
        if history is None or state.rfm_last_day is None:
            return
        repeat, _, _, monetary = history
        new = (state.rfm_last_day, repeat, monetary)
        self._profiles[state.customer_id] = new
        self._last_days[new[0]] += 1
        self._frequency[repeat] += 1
        self._monetary[monetary] += 1

    def sketch(self, now: float) -> RfmSketch:
        """The RFM summary of every customer with an order, recency counted to ``now``."""
        sketch = RfmSketch(as_of=now)
        today = day_of(now)
        recency: Counter[float] = Counter()
        for last_day, n in self._last_days.items():
            recency[max(0, today - last_day)] += n
        sketch.add_counts(recency, self._frequency, self._monetary)
        return sketch


def _uncount(counter: Counter[Any], value: Any) -> None:
    counter[value] -= 1
    if not counter[value]:
        del counter[value]


def cut_schedule(
    events: Sequence[InputEvent],
    *,
    until: float,
    config: StateConfig,
    step: float = 86400.0,
    cuts_every: float = 7 * 86400.0,
    start: float | None = None,
    on_cuts: Callable[[float, CutPoints | None], None] | None = None,
) -> dict[float, CutPoints | None]:
    """The RFM cut points :func:`run_backtest` sets at its sweeps (every ``step`` from the
    day of ``start``, default the first event's time), by sweep time, refreshed every
    ``cuts_every``: worked out from the events alone, as they depend only on each
    customer's orders, so a run over a part of the customers can use the population's.
    ``on_cuts`` is called with each sweep time and its cut points as soon as they are known
    (in time order)."""
    schedule: dict[float, CutPoints | None] = {}
    if not events:
        return schedule
    states: dict[str, CustomerState] = {}
    population = Population()
    touched: set[str] = set()  # customers with events since the last cut points
    if start is None:
        start = events[0].occurred_at.timestamp()
    next_sweep = (start // 86400.0) * 86400.0 + step
    next_cuts = next_sweep

    def sweep(now: float) -> None:
        nonlocal next_cuts
        if now >= next_cuts:
            for cid in touched:
                population.update(states[cid])
            touched.clear()
            schedule[now] = cut_points(population.sketch(now))
            next_cuts = now + cuts_every
            if on_cuts is not None:
                on_cuts(now, schedule[now])

    for event in events:
        ts = event.occurred_at.timestamp()
        if ts >= until:
            break
        while ts >= next_sweep:
            sweep(next_sweep)
            next_sweep += step
        state = states.get(event.customer_id)
        if state is None:
            state = states[event.customer_id] = CustomerState(event.customer_id)
        apply_event(state, event, config)
        touched.add(event.customer_id)
    while next_sweep < until:
        sweep(next_sweep)
        next_sweep += step
    sweep(until)
    return schedule


def run_backtest(
    engine: Engine,
    events: Sequence[InputEvent],
    *,
    until: float,
    step: float = 86400.0,
    health_below: int | None = 50,
    cuts_every: float = 7 * 86400.0,
    on_progress: Callable[[int, float], None] | None = None,
    start: float | None = None,
    cuts: Mapping[float, CutPoints | None] | None = None,
) -> Run:
    """Apply ``events`` (sorted by time; those at or after ``until`` are ignored) and sweep.

    Sweeps run every ``step`` of event time from the day of ``start`` (default: the first
    event's time), and a last one at ``until``. ``health_below``: a health score under it
    opens a ``health-score`` episode (None: scores are not tracked). RFM cut points are
    set at the sweeps of ``cuts`` (by sweep time, :func:`cut_schedule`; default: the
    schedule of ``events``, refreshed every ``cuts_every``); a run over a part of the
    population passes the population's.
    ``on_progress`` is called now and then with the number of events applied so far and
    the event time reached.
    """
    run = Run()
    tracker = _Tracker(run, health_below if engine.scorer is not None else None)
    states: dict[str, CustomerState] = {}
    index = DeadlineIndex()
    dirty: set[str] = set()
    if not events:
        return run
    if start is None:
        start = events[0].occurred_at.timestamp()
    next_sweep = (start // 86400.0) * 86400.0 + step
    if engine.scorer is None:
        cuts = None
    elif cuts is None:
        cuts = cut_schedule(
            events,
            until=until,
            config=engine.config.state,
            step=step,
            cuts_every=cuts_every,
            start=start,
        )

    done = 0

    def sweep(now: float) -> None:
        if on_progress is not None:
            on_progress(done, now)
        for cid in dirty:
            index.set(cid, engine.next_deadline(states[cid]))
        dirty.clear()
        if cuts is not None and now in cuts:
            engine.set_cut_points(cuts[now])
        for cid in index.pop_due(now):
            state = states[cid]
            tracker.note(state, engine.advance(state, now))
            index.set(cid, engine.next_deadline(state))
        run.sweeps += 1

    first_seen = run.first_seen
    for event in events:
        ts = event.occurred_at.timestamp()
        if ts >= until:
            break
        done += 1
        while ts >= next_sweep:
            sweep(next_sweep)
            next_sweep += step
        cid = event.customer_id
        state = states.get(cid)
        if state is None:
            state = states[cid] = CustomerState(cid)
            first_seen[cid] = ts
        result = engine.apply(state, event)
        if result.applied:
            run.applied += 1
        else:
            run.duplicates += 1
        tracker.note(state, result)
        dirty.add(cid)
        if on_progress is not None and done % 1000 == 0:
            on_progress(done, ts)
    while next_sweep < until:
        sweep(next_sweep)
        next_sweep += step
    sweep(until)
    if on_progress is not None:
        on_progress(done, until)
    for cid, state in states.items():
        health = state.scores.get("health")
        if isinstance(health, int):
            run.health[cid] = health
    return run


def merge_runs(runs: Sequence[Run]) -> Run:
    """One run from runs over disjoint parts of the customers (same sweeps); its episodes in
    firing order, ties by customer, rule and id, whatever the split."""
    merged = Run()
    for part in runs:
        merged.first_seen.update(part.first_seen)
        merged.episodes.extend(part.episodes)
        merged.health.update(part.health)
        merged.applied += part.applied
        merged.duplicates += part.duplicates
        merged.evaluations += part.evaluations
        merged.errors += part.errors
        merged.sweeps = max(merged.sweeps, part.sweeps)
    merged.episodes.sort(key=lambda e: (e.fired_at, e.customer_id, e.rule_id, e.alert_id))
    merged.first_seen = dict(sorted(merged.first_seen.items()))
    merged.health = dict(sorted(merged.health.items()))
    return merged


def rules_needed(rules: RuleSet, rule_id: str) -> frozenset[str] | None:
    """The rules whose evaluation can change ``rule_id``'s alerts: itself and, transitively,
    the rules that inhibit it. None (all of them) when one of those reads other alerts.

    A rule's alerts depend only on the customer's state, its own timers and whether an
    inhibiting rule fires; deadlines of other rules change when it is evaluated, never
    what it gives. So a run with these rules alone gives its alerts as the full pack does.
    """
    by_id = {r.id: r for r in rules.rules}
    needed: set[str] = set()
    todo = [rule_id]
    while todo:
        current = todo.pop()
        if current in needed:
            continue
        needed.add(current)
        if by_id[current].reads_alerts:
            return None
        todo.extend(rules.inhibited_by.get(current, ()))
    return frozenset(needed)
