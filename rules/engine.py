"""The pure core: fold events into customer state, evaluate rules, run the alert lifecycle.

Everything happens in event time. An event is evaluated at the customer's own high-water
event time; a sweep evaluates a customer at each of its due deadlines. Before an event is
applied, the customer is first advanced through the deadlines that fell due before it, so the
outputs are the same whether or not a sweep happened to run in between: live, replay and
backtest give identical alerts for identical input.

Per rule and customer, ``state.alerts[rule_id]`` holds the lifecycle record: ``s`` is
``pending`` (``when`` holds, waiting for ``for``), ``firing``, or ``idle`` (kept only while it
remembers a snooze or recent firings for ``max_fires``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from math import inf, nextafter
from typing import Any

from rules.calendar import BusinessCalendar
from rules.loader import CompiledRule, RuleSet
from rules.memo import MISS, Memo
from rules.model import TaskSpec
from rules.scoring import CompiledScoring, Scorer
from rules.templates import placeholders, render
from schemas import (
    EVENT_KINDS,
    AlertEvent,
    CustomerHealth,
    InputEvent,
    TaskEvent,
    TaskUpdateEvent,
)
from streams.clv import ClvModel
from streams.features import FEATURES, KINDS_CHANGING
from streams.sketch import CutPoints
from streams.state import DAY, CustomerState, StateConfig, apply_event, day_of, prune

Output = AlertEvent | TaskEvent
"""What the engine asks the runtime to publish in order (snapshots travel beside them)."""
TIER_CHANGED = "tier_changed"
SNAPSHOT_FEATURES = (
    "revenue_365d",
    "orders_365d",
    "days_since_last_login",
    "days_since_last_order",
    "logins_7d",
    "complaints_7d",
    "open_tickets",
    "open_critical_tickets",
    "key_contacts",
    "days_to_renewal",
    "tenure_days",
)
MAX_STEPS_PER_ADVANCE = 1000
MAX_SETTLE_ROUNDS = 3
PRIORITY_BY_SEVERITY = {
    "critical": "urgent",
    "high": "high",
    "medium": "medium",
    "low": "low",
    "info": "low",
}
ESCALATED_PRIORITY = {"low": "medium", "medium": "high", "high": "urgent", "urgent": "urgent"}
ROLE_FIELDS = frozenset({"owner", "csm"})
OPEN_TASK = ("open", "ack")


@dataclass(frozen=True)
class EngineConfig:
    """Knobs of the engine beyond state keeping."""

    state: StateConfig = field(default_factory=StateConfig)
    fallback_assignee: str = "cs-queue"
    fallback_team: tuple[str, ...] = ()
    calendar: BusinessCalendar = field(default_factory=BusinessCalendar)
    memo_size: int = 4096
    clv_model: ClvModel | None = None
    # customer-health snapshots: at most one per customer per interval (a tier change goes
    # at once); a health move below ``snapshot_health_delta`` points alone is not material
    snapshot_interval: float = 3600.0
    snapshot_health_delta: int = 5


@dataclass
class RuleError:
    """A rule that could not be evaluated for a customer (bad types at run time)."""

    rule_id: str
    customer_id: str
    message: str


@dataclass
class Result:
    """What one call into the engine produced."""

    applied: bool = True
    outputs: list[Output] = field(default_factory=list)  # alerts and tasks, in order
    snapshots: list[CustomerHealth] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    evaluations: int = 0
    eval_seconds: float = 0.0
    # (rule id, alert id) of lifecycle records of rules no longer in the pack, dropped
    forgotten: list[tuple[str, str | None]] = field(default_factory=list)

    def extend(self, other: Result) -> None:
        """Append another result's outputs, snapshots and errors."""
        self.outputs.extend(other.outputs)
        self.snapshots.extend(other.snapshots)
        self.errors.extend(other.errors)
        self.forgotten.extend(other.forgotten)
        self.evaluations += other.evaluations
        self.eval_seconds += other.eval_seconds


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _digest(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=10).hexdigest()


def alert_id_for(customer_id: str, rule: CompiledRule, fired_at: float) -> str:
    """Deterministic alert id from customer, rule, labels and firing start."""
    labels = ",".join(f"{k}={v}" for k, v in sorted(rule.rule.labels.items()))
    return "al-" + _digest(customer_id, rule.id, labels, f"{fired_at:.3f}")


@dataclass
class _Pass:
    """One evaluation of one customer at one time: lazily computed feature values."""

    state: CustomerState
    at: float
    values: dict[str, Any] = field(default_factory=dict)
    alerts_changed: bool = False  # in the current round
    alerts_touched: bool = False  # in this pass: one fired, resolved, was forgotten or upgraded
    timers: frozenset[str] = frozenset()  # rules whose lifecycle timer is due

    def value(self, name: str) -> Any:
        found = self.values.get(name, MISS)
        if found is MISS:
            feature = FEATURES[name]
            if feature.derive is not None:  # from values this pass may already have
                names, derive = feature.derive
                found = derive(*map(self.value, names))
            else:
                found = feature.compute(self.state, self.at)
            self.values[name] = found
        return found

    def pick(self, names: frozenset[str]) -> dict[str, Any]:
        return {n: self.value(n) for n in sorted(names)}


def _holds_not(guard: Memo, one: _Pass) -> bool:
    """True if the guard is surely false now (an error counts as "maybe": keep the wake-ups)."""
    try:
        return guard.run(one.value) is not True
    except (RuntimeError, TypeError, ValueError, KeyError, ArithmeticError):
        return False


def _version(state: CustomerState) -> tuple[float | None, str | None]:
    """Identifies a state: it changes only by an applied event (its id) or an evaluation."""
    return (state.evaluated_at, state.recent_ids[-1] if state.recent_ids else None)


@dataclass(slots=True)
class _Timing:
    """Cached next change times of a customer's features, valid for one state version."""

    version: tuple[float | None, str | None]
    changes: dict[str, float | None]
    deadline: float | None = None
    has_deadline: bool = False


class Engine:
    """Applies events and deadlines to one customer's state at a time.

    Holds no customer state; only memoised CEL results, which do not change outputs.
    """

    def __init__(
        self,
        rules: RuleSet,
        config: EngineConfig | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.rules = rules
        self.config = config or EngineConfig()
        self._wall = wall_clock
        self._by_id = {r.id: r for r in rules.rules}
        limit = self.config.memo_size
        self._when = {r.id: Memo(r.when, limit) for r in rules.rules}
        self._resolve_when = {
            r.id: Memo(r.resolve_when, limit) for r in rules.rules if r.resolve_when
        }
        self._applies_to = {r.id: Memo(r.applies_to, limit) for r in rules.rules if r.applies_to}
        self._shown = {r.id: frozenset(_template_names(r)) for r in rules.rules}
        self._timing: dict[str, _Timing] = {}
        scoring = rules.scoring
        shown = frozenset().union(*self._shown.values())
        self.scorer = (
            Scorer(
                scoring,
                limit,
                self.config.clv_model,
                read_elsewhere=rules.inputs | shown,
                # the snapshot check is skipped while nothing it reads moved: a new delta
                # makes every customer's next step a full one, and so checks again
                context=f"health delta {self.config.snapshot_health_delta}",
            )
            if scoring is not None
            else None
        )
        self._score_thresholds, self._score_grids, self._score_timed = (
            _scoring_wakeups(scoring) if scoring is not None else ((), (), ())
        )
        # what rules and scoring read; scoring is skipped while none of its inputs changed
        self._score_inputs = scoring.inputs if scoring is not None else frozenset()
        # what the snapshot check reads; it is skipped while none of it changed
        self._snapshot_inputs = (
            SNAPSHOT_MARKS | frozenset(scoring.at_risk.variables())
            if scoring is not None
            else frozenset()
        )
        inputs = rules.inputs | self._score_inputs | self._snapshot_inputs
        self._time_inputs = frozenset(n for n in inputs if FEATURES[n].changes_with_time)
        self._daily = frozenset(n for n in FEATURES if FEATURES[n].daily)
        # features every event kind may change (first-seen time, pruning): checked by value
        kinds = [names for kind, names in KINDS_CHANGING.items() if kind in EVENT_KINDS]
        self._any_event_set = frozenset.intersection(*kinds) & inputs
        self._alert_features = tuple(n for n in FEATURES if "alerts" in FEATURES[n].depends_on)
        self._alert_dependent = tuple(
            r for r in rules.rules if r.reads_alerts or r.id in rules.inhibited_by
        )
        self._any_event = tuple(sorted(self._any_event_set))
        # per time-based rule: what can wake it (see next_deadline); the day-counter
        # thresholds of rules without a guard, and scoring's, are searched together
        wakers = []
        merged: dict[str, set[int]] = {n: set(v) for n, v in self._score_thresholds}
        for r in rules.rules:
            if not r.time_based:
                continue
            guard = self._applies_to[r.id] if r.static_guard is not None else None
            if guard is None:
                for name, values in r.thresholds.items():
                    merged.setdefault(name, set()).update(values)
            others = tuple(
                sorted(
                    n for n in r.inputs if FEATURES[n].changes_with_time and n not in r.thresholds
                )
            )
            own = _ascending(r.thresholds.items()) if guard is not None else ()
            if own or others:  # a rule woken by its thresholds alone is in the merged search
                daily_only = all(FEATURES[n].daily for n in (*others, *dict(own)))
                wakers.append((guard, own, _cheap_first(others), daily_only))
        self._wakers = tuple(wakers)
        self._thresholds = _ascending(merged.items())
        # scoring's time inputs whose changes an unguarded rule's wake-ups already count
        covered = {n for guard, _, others, _ in wakers if guard is None for n in others}
        self._score_timed = _cheap_first(
            n
            for n in self._score_timed
            if n not in covered
            and not (FEATURES[n].moves_with and covered.issuperset(FEATURES[n].moves_with))
        )

    def set_cut_points(self, cuts: CutPoints | None) -> None:
        """Use these population cut points for RFM scores from now on (the next evaluations)."""
        if self.scorer is not None:
            self.scorer.cuts = cuts

    # -- entry points -------------------------------------------------------------------
    def apply(self, state: CustomerState, event: InputEvent, not_before: float = 0.0) -> Result:
        """Advance to the event's time, fold it in, evaluate; no-op for a seen event_id.

        The evaluation happens at the event time, or later: never before the customer's last
        evaluation, and never before ``not_before`` (the partition's watermark, so a late
        event updates state but cannot fire an alert in the past).
        """
        if state.seen(event.event_id):
            return Result(applied=False)
        ts = event.occurred_at.timestamp()
        result = self.advance(state, ts)
        task_rule = None
        if isinstance(event, TaskUpdateEvent):  # progress counts from when it happened
            task_rule = self._task_status(state, event)
        previous = state.evaluated_at
        at = max(ts, not_before, previous if previous is not None else ts)
        if at > ts:  # a late event: first bring the customer to where its partition is
            result.extend(self.advance(state, at))
            previous = state.evaluated_at
        timing = self._timing_of(state)
        changes = timing.changes
        kind_changes = KINDS_CHANGING.get(event.event_kind, frozenset())
        if previous is not None and at > previous:
            # next changes from the state before the event: applying it also prunes what
            # aged out, and a month that left a window is then no longer there to be seen
            same_day = at < _midnight_after(previous)
            for name in self._time_inputs:
                if same_day and name in self._daily:
                    continue  # cannot have changed since ``previous``
                if name not in kind_changes or name in self._any_event_set:
                    self._change_of(state, previous, name, changes)
        before = [FEATURES[n].compute(state, at) for n in self._any_event]
        apply_event(state, event, self.config.state)
        moved = frozenset(
            n
            for n, old in zip(self._any_event, before, strict=True)
            if FEATURES[n].compute(state, at) != old
        )
        one = _Pass(state, at, alerts_touched=task_rule is not None)  # a record may be upgraded
        if isinstance(event, TaskUpdateEvent) and event.status == "dismissed" and task_rule:
            self._snooze(one, task_rule, event.snooze_until, result)
        # the features every kind may change moved by the event only if their value did
        by_event = (kind_changes - self._any_event_set) | moved
        changed = self._changed(state, by_event, previous, at, changes)
        swept = self._swept(state, previous, at, changed, by_event)
        result.extend(self._evaluate(one, changed, swept))
        stale = kind_changes | self._any_event_set | _SCORE_FEATURES  # the step moved them
        self._remember(state, timing, stale, at)
        return result

    def advance(self, state: CustomerState, until: float) -> Result:
        """Evaluate the customer at every deadline due at or before ``until``."""
        result = Result()
        for _ in range(MAX_STEPS_PER_ADVANCE):
            due = self._due_by(state, until)
            if due is None:
                break
            previous = state.evaluated_at
            timing = self._timing_of(state)
            changes = timing.changes
            # what time changed, seen before pruning drops what aged out at ``due``
            changed = self._changed(state, frozenset(), previous, due, changes)
            prune(state, due, self.config.state.horizon_days)
            timers = frozenset(
                r
                for t, r in self._lifecycle_times(state)
                if t <= due and (previous is None or t > previous)
            )
            one = _Pass(state, due, timers=timers)
            result.extend(self._evaluate(one, changed, self._swept(state, previous, due, changed)))
            self._remember(state, timing, _SCORE_FEATURES, due)
        return result

    def next_deadline(self, state: CustomerState) -> float | None:
        """Earliest future time when this customer's rule results may change by time alone."""
        at = state.evaluated_at
        if at is None:
            return None
        timing = self._timing_of(state)
        if not timing.has_deadline:
            best = self._deadline(state, at, timing.changes, inf)
            timing.deadline = None if best == inf else best
            timing.has_deadline = True
        return timing.deadline

    def _due_by(self, state: CustomerState, until: float) -> float | None:
        """The next deadline if it is at or before ``until``, else None (a cheaper search)."""
        at = state.evaluated_at
        if at is None:
            return None
        timing = self._timing_of(state)
        if timing.has_deadline:
            due = timing.deadline
            return due if due is not None and due <= until else None
        bound = nextafter(until, inf)
        best = self._deadline(state, at, timing.changes, bound)
        if best >= bound:
            return None
        timing.deadline = best  # the earliest of all: what next_deadline would find
        timing.has_deadline = True
        return best

    # -- per-customer timing cache ----------------------------------------------------------
    # Each feature's next change time stays valid until an event changes what the feature
    # reads or the time passes it; keeping them per customer makes both the "what changed"
    # check after an event and the next deadline incremental. A cache only: a miss
    # recomputes, and outputs never depend on it.
    def _timing_of(self, state: CustomerState) -> _Timing:
        """The cached timing of the state as it is now (empty if it changed since)."""
        timing = self._timing.get(state.customer_id)
        if timing is not None and timing.version == _version(state):
            return timing
        return self._timing_for(state, {})

    def _remember(
        self, state: CustomerState, timing: _Timing, stale: frozenset[str], at: float
    ) -> None:
        """Keep, for the state's new version, what ``stale`` features and time left valid."""
        self._timing_for(
            state,
            {n: t for n, t in timing.changes.items() if n not in stale and (t is None or t > at)},
        )

    def _timing_for(self, state: CustomerState, changes: dict[str, float | None]) -> _Timing:
        if len(self._timing) >= self.config.memo_size * 16:
            self._timing.clear()
        timing = self._timing[state.customer_id] = _Timing(_version(state), changes)
        return timing

    @staticmethod
    def _change_of(
        state: CustomerState, at: float, name: str, changes: dict[str, float | None]
    ) -> float | None:
        """The feature's next change after ``at``, from ``changes`` or computed into it."""
        if name in changes:
            return changes[name]
        feature = FEATURES[name]
        if feature.moves_with:  # early is safe: an evaluation that finds nothing changed
            times = [Engine._change_of(state, at, n, changes) for n in feature.moves_with]
            t = changes[name] = min((x for x in times if x is not None), default=None)
            return t
        next_change = feature.next_change
        assert next_change is not None
        t = changes[name] = next_change(state, at)
        return t

    def _deadline(
        self, state: CustomerState, at: float, changes: dict[str, float | None], best: float
    ) -> float:
        """The earliest wake-up after ``at`` and before ``best``; ``best`` if there is none.

        Cheap parts first: once ``best`` is at or before the next midnight, the features that
        change only at midnight cannot move it.
        """
        for t, _ in self._lifecycle_times(state):
            if at < t < best:
                best = t
        if self.scorer is not None:
            due = state.scores.get("snap_due")
            if due is not None and at < due < best:
                best = due
        midnight = _midnight_after(at)
        best = self._earliest(state, at, changes, self._thresholds, (), best, midnight)
        one = None
        for guard, thresholds, others, daily_only in self._wakers:
            if daily_only and best <= midnight:
                continue
            if guard is not None:
                if one is None:
                    one = _Pass(state, at)
                if _holds_not(guard, one):
                    continue  # cannot hold until an event changes the guard
            best = self._earliest(state, at, changes, thresholds, others, best, midnight)
        if self.scorer is not None:
            best = self._scoring_deadline(state, at, changes, best, midnight)
        return best

    def _scoring_deadline(
        self,
        state: CustomerState,
        at: float,
        changes: dict[str, float | None],
        best: float,
        midnight: float,
    ) -> float:
        """Earliest time after ``at`` (before ``best``) a score may change by time alone."""
        best = self._earliest(state, at, changes, (), self._score_timed, best, midnight)
        for name, bounds in self._score_grids:
            feature = FEATURES[name]
            if feature.daily and best <= midnight:
                continue
            now = feature.compute(state, at)
            for bound in bounds:
                if bound <= now:
                    continue
                if feature.crosses is not None:
                    t = feature.crosses(state, at, bound)
                else:
                    assert feature.reaches is not None
                    t = feature.reaches(state, at, int(-(-bound // 1)))
                if t is not None and at < t < best:
                    best = t
                break  # only the next bound up matters
        return best

    def _earliest(
        self,
        state: CustomerState,
        at: float,
        changes: dict[str, float | None],
        thresholds: tuple[tuple[str, tuple[int, ...]], ...],
        others: tuple[str, ...],
        best: float,
        midnight: float,
    ) -> float:
        """The earliest of ``best``, the moments day counters reach their thresholds (values
        in ascending order) and the next changes of ``others``, after ``at``."""
        daily = self._daily
        for name, values in thresholds:
            feature = FEATURES[name]
            if best <= midnight and name in daily:
                continue
            reaches = feature.reaches
            assert reaches is not None
            for value in values:
                t = reaches(state, at, value)
                if t is None:
                    continue  # reached already (or never)
                if at < t < best:
                    best = t
                if not feature.counts_down:
                    break  # a counter that counts up reaches higher values later
        for name in others:
            if best <= midnight and name in daily:
                continue
            t = self._change_of(state, at, name, changes)
            if t is not None and at < t < best:
                best = t
        return best

    def _lifecycle_times(self, state: CustomerState) -> list[tuple[float, str]]:
        """(time, rule id) of every lifecycle timer: for, keep_firing_for, escalation, …"""
        times: list[tuple[float, str]] = []
        for rule_id, rec in state.alerts.items():
            rule = self._by_id.get(rule_id)
            if rule is None:
                continue
            spec = rule.rule
            if rec["s"] == "pending":
                times.append((rec["since"] + spec.for_, rule_id))
            elif rec["s"] == "firing":
                if "clear" in rec:
                    times.append((rec["clear"] + spec.keep_firing_for, rule_id))
                if self._escalation_pending(spec.task, rec):
                    assert spec.task is not None and spec.task.escalate_after is not None
                    times.append((rec["tat"] + spec.task.escalate_after, rule_id))
            if "snooze" in rec:
                times.append((rec["snooze"], rule_id))
            if spec.max_fires is not None and rec.get("fires"):
                times.append((rec["fires"][0] + spec.max_fires.per, rule_id))
        for rule_id, last in state.last_fired.items():
            rule = self._by_id.get(rule_id)
            if rule is not None and rule.rule.cooldown:
                times.append((last + rule.rule.cooldown, rule_id))
        return times

    # -- what to evaluate ---------------------------------------------------------------
    def _changed(
        self,
        state: CustomerState,
        by_event: frozenset[str],
        previous: float | None,
        at: float,
        changes: dict[str, float | None],
    ) -> frozenset[str] | None:
        """Features that may differ from the last evaluation; None means "evaluate all".

        ``by_event``: what the event applied since may have changed; ``changes``: known next
        change times at ``previous``.
        """
        if previous is None:
            return None
        changed = set(by_event)
        if at > previous:
            same_day = at < _midnight_after(previous)
            for name in self._time_inputs:
                if name not in changed and not (same_day and name in self._daily):
                    t = self._change_of(state, previous, name, changes)
                    if t is not None and t <= at:
                        changed.add(name)
        return frozenset(changed)

    def _needs(
        self,
        rule: CompiledRule,
        changed: frozenset[str] | None,
        one: _Pass,
        alerts_changed_before: bool = False,
    ) -> bool:
        if changed is None or not rule.inputs.isdisjoint(changed) or rule.id in one.timers:
            return True
        if one.alerts_changed or alerts_changed_before:
            return rule.reads_alerts or rule.id in self.rules.inhibited_by
        return False

    # -- evaluation ---------------------------------------------------------------------
    def _swept(
        self,
        state: CustomerState,
        previous: float | None,
        at: float,
        changed: frozenset[str] | None,
        by_event: frozenset[str] = frozenset(),
    ) -> frozenset[str] | None:
        """Of the scoring inputs that moved from ``previous`` to ``at``, those that matter.

        A day counter that scoring only compares with literals matters when time carried it
        past one of them; one in ``by_event`` (the features an event applied since may have
        changed) always does. (A grid feature always matters: the snapshot shows its value.)
        """
        if changed is None or previous is None:
            return changed
        keep = set(changed & self._score_inputs)
        for name, values in self._score_thresholds:
            if name in keep and name not in by_event and not FEATURES[name].counts_down:
                compute = FEATURES[name].compute
                low, high = compute(state, previous), compute(state, at)
                if not any(low < v <= high for v in values):
                    keep.discard(name)
        return frozenset(keep)

    def _evaluate(
        self,
        one: _Pass,
        changed: frozenset[str] | None,
        score_changed: frozenset[str] | None = None,
    ) -> Result:
        """Score the customer, step every rule that needs it, then maybe snapshot.

        ``score_changed``: what scoring must consider changed (default: ``changed``).
        """
        started = time.perf_counter()
        result = Result()
        one.state.evaluated_at = one.at
        for orphan in [r for r in one.state.alerts if r not in self._by_id]:
            result.forgotten.append((orphan, one.state.alerts.pop(orphan).get("id")))
            one.state.last_fired.pop(orphan, None)
            one.alerts_touched = True
        tier_change = None
        full_step = True
        if self.scorer is None:
            # scores kept while scoring is off go stale: recompute them all when it is back
            one.state.scores.pop("def", None)
        else:
            outcome = self.scorer.step(
                one.state, one.at, one.value, changed if score_changed is None else score_changed
            )
            for name in _SCORE_FEATURES:  # computed before the step: stale now
                one.values.pop(name, None)
            if changed is not None:
                changed = changed | outcome.changed
            tier_change = outcome.tier_change
            full_step = outcome.full
            if tier_change is not None:
                result.outputs.append(self._tier_notice(one, *tier_change))
            for where, message in outcome.errors:
                result.errors.append(RuleError(f"scoring.{where}", one.state.customer_id, message))
        self._round(one, changed, result, self.rules.rules)
        # an alert that changed late in the pass may concern rules evaluated before it
        # (a rule reading alerts that inhibits another): settle them, a bounded few times
        for _ in range(MAX_SETTLE_ROUNDS):
            if not one.alerts_changed:
                break
            self._round(one, frozenset(), result, self._alert_dependent)
        if self.scorer is not None and not self._snapshot_unchanged(one, changed, full_step):
            self._snapshot(one, result, tier_change)
        result.eval_seconds = time.perf_counter() - started
        return result

    # -- customer-health snapshots ---------------------------------------------------------
    def _snapshot_unchanged(
        self, one: _Pass, changed: frozenset[str] | None, full_step: bool
    ) -> bool:
        """True if the snapshot check would find what it found last time: nothing to send.

        Nothing it reads moved since the last evaluation (scores, the at-risk flag's inputs,
        alerts), the last check had nothing waiting for the interval, and the step was not a
        full one (new definitions or health delta, scoring back on, a first step).
        """
        scores = one.state.scores
        return (
            changed is not None
            and not full_step
            and not one.alerts_touched
            and "snap" in scores
            and "snap_due" not in scores
            and changed.isdisjoint(self._snapshot_inputs)
        )

    def _snapshot(
        self,
        one: _Pass,
        result: Result,
        tier_change: tuple[str, str] | None,
    ) -> None:
        """Emit a snapshot if something material changed and the interval allows it."""
        assert self.scorer is not None
        scores = one.state.scores
        open_alerts = sorted(
            rec["id"] for rec in one.state.alerts.values() if rec.get("s") == "firing"
        )
        at_risk = self.scorer.at_risk(one.value)
        last = scores.get("snap")  # [time, health, *marks]
        health = scores.get("health", 0)
        # the snapshot's material marks: tier, stage, r, f, m, at risk, open alerts
        mark = [
            scores.get("tier"),
            scores.get("stage"),
            scores.get("r", 0),
            scores.get("f", 0),
            scores.get("m", 0),
            at_risk,
            open_alerts,
        ]
        reasons = ["first"] if last is None else []
        for i, v in enumerate(mark):
            if last is not None and last[2 + i] != v and _MARK_REASONS[i] not in reasons:
                reasons.append(_MARK_REASONS[i])
        if last is not None and abs(health - last[1]) >= self.config.snapshot_health_delta:
            reasons.append("health")
        if not reasons:
            scores.pop("snap_due", None)
            return
        due = (last[0] + self.config.snapshot_interval) if last is not None else one.at
        if tier_change is None and one.at < due:
            scores["snap_due"] = due  # material, but too soon: emit when the interval is over
            return
        scores.pop("snap_due", None)
        scores["snap"] = [one.at, health, *mark]
        if not self.scorer.clv_eager:
            try:
                self.scorer.update_clv(one.state, one.at, scores)
            except (ValueError, ArithmeticError) as exc:  # a model that does not fit
                result.errors.append(RuleError("scoring.clv", one.state.customer_id, str(exc)))
        result.snapshots.append(
            self._health_snapshot(one, open_alerts, at_risk, reasons, tier_change)
        )

    def _health_snapshot(
        self,
        one: _Pass,
        open_alerts: list[str],
        at_risk: bool,
        reasons: list[str],
        tier_change: tuple[str, str] | None,
    ) -> CustomerHealth:
        state, scores, scorer = one.state, one.state.scores, self.scorer
        assert scorer is not None
        model = self.config.clv_model
        cuts = scorer.cuts
        factors = {
            share.factor: {
                "value": share.value,
                "points": share.points,
                "weight": share.weight,
                "contribution": share.contribution,
                "missing": share.missing,
            }
            for share in scorer.shares(scores, one.value)
        }
        since = scores.get("tier_since")
        return CustomerHealth.model_validate(
            {
                "customer_id": state.customer_id,
                "name": state.account.get("name"),
                "event": TIER_CHANGED if tier_change else "snapshot",
                "reasons": ([TIER_CHANGED] if tier_change else [])
                + [r for r in reasons if r != "tier"],
                "tier": scores.get("tier"),
                "previous_tier": scores.get("prev_tier"),
                "tier_changed_at": None if since is None else _ts(since),
                "at_risk": at_risk,
                "lifecycle_stage": scores.get("stage"),
                "health": {
                    "score": scores.get("health", 0),
                    "trend_7d": scores.get("trend", 0),
                    "profile": scores.get("profile", ""),
                    "factors": factors,
                },
                "rfm": {
                    "frequency": one.value("rfm_frequency"),
                    "recency_days": one.value("rfm_recency_days"),
                    "age_days": one.value("rfm_age_days"),
                    "monetary": round(one.value("rfm_monetary"), 2),
                    "r_score": scores.get("r", 0),
                    "f_score": scores.get("f", 0),
                    "m_score": scores.get("m", 0),
                    "cut_points": None if cuts is None else cuts.to_dict(),
                },
                "clv": None
                if model is None or "clv_key" not in scores
                else {
                    "expected_orders_90d": scores["eo90"],
                    "p_alive": scores["p_alive"],
                    "clv_12m": scores["clv"],
                    "model": f"{model.fitted_at.isoformat()} {model.source}",
                },
                "features": one.pick(_SNAPSHOT_SET),
                "open_alerts": open_alerts,
                "as_of": _ts(one.at),
            }
        )

    def _tier_notice(self, one: _Pass, before: str, after: str) -> AlertEvent:
        """The info event on the alerts topic announcing a tier change."""
        state = one.state
        direction = "downgraded" if state.scores.get("downgraded") else "upgraded"
        return AlertEvent(
            alert_id="al-" + _digest(state.customer_id, TIER_CHANGED, f"{one.at:.3f}"),
            customer_id=state.customer_id,
            rule_id=TIER_CHANGED,
            severity="info",
            status="notice",
            summary=f"{state.account.get('name', state.customer_id)}: tier {direction} "
            f"from {before} to {after}",
            evidence={
                "from": before,
                "to": after,
                "health_score": state.scores.get("health"),
                "revenue_365d": one.value("revenue_365d"),
                "lifecycle_stage": state.scores.get("stage"),
            },
            tier=after,
            fired_at=_ts(one.at),
            emitted_at=_ts(self._wall()),
        )

    def _round(
        self,
        one: _Pass,
        changed: frozenset[str] | None,
        result: Result,
        rules: tuple[CompiledRule, ...],
    ) -> None:
        changed_before = one.alerts_changed
        one.alerts_changed = False
        for rule in rules:
            if not self._needs(rule, changed, one, changed_before):
                continue
            result.evaluations += 1
            try:
                if self._step(rule, one, result):
                    one.alerts_changed = True
                    for name in self._alert_features:  # their cached values are stale now
                        one.values.pop(name, None)
            except (RuntimeError, TypeError, ValueError, KeyError, ArithmeticError) as exc:
                result.errors.append(RuleError(rule.id, one.state.customer_id, str(exc)))

    def _step(self, rule: CompiledRule, one: _Pass, result: Result) -> bool:
        """Move one rule's lifecycle for the customer; True if an alert fired or resolved."""
        state, at, spec = one.state, one.at, rule.rule
        rec = state.alerts.get(rule.id)
        if rec is not None and self._upgrade(rule, rec):
            one.alerts_touched = True
        status = rec["s"] if rec else "idle"
        applies_to = self._applies_to.get(rule.id)
        applies = applies_to is None or applies_to.run(one.value) is True
        inhibitor = self._inhibitor(rule, state)
        resolve_when = self._resolve_when.get(rule.id)
        resolved = False
        if rec is not None and status == "firing":
            if inhibitor is not None:
                self._resolve(rule, one, rec, result, "inhibited")
                state.last_fired.pop(rule.id, None)  # may fire again once the inhibitor clears
                return True
            if not applies:
                clear = True
            elif resolve_when is not None:
                clear = resolve_when.run(one.value) is True
            else:
                clear = self._when[rule.id].run(one.value) is not True
            if not clear:
                rec.pop("clear", None)
            elif at >= rec.setdefault("clear", at) + spec.keep_firing_for:
                self._resolve(rule, one, rec, result, "cleared")
                resolved = True
                rec = state.alerts.get(rule.id)
                status = rec["s"] if rec else "idle"
            if not resolved:
                assert rec is not None
                self._maybe_escalate(rule, one, rec, result)
                return False
        holds = applies and inhibitor is None and self._when[rule.id].run(one.value) is True
        if holds and resolved and resolve_when is not None:
            # both conditions hold: stay resolved rather than flap on every evaluation
            holds = resolve_when.run(one.value) is not True
        if not holds:
            if resolved:
                return True
            if status == "pending":
                self._forget_pending(state, rule.id)
            return False
        if not self._may_fire(rule, state, rec, at):
            return resolved
        if spec.for_ > 0:
            if rec is None or status != "pending":
                state.alerts[rule.id] = {**(rec or {}), "s": "pending", "since": at}
                return resolved
            if at < rec["since"] + spec.for_:
                return resolved
        self._fire(rule, one, rec, result)
        return True

    def _upgrade(self, rule: CompiledRule, rec: dict[str, Any]) -> bool:
        """Fill in what records written by an older version lack (task status, severity);
        True if the severity was added (``open_high_alerts`` may count it now)."""
        if rec["s"] != "firing":
            return False
        if "task" in rec and "tstat" not in rec:
            rec["tstat"] = "open"
            rec["tat"] = rec["since"]
        if "sev" not in rec and not rule.reads_alerts:
            rec["sev"] = rule.rule.severity
            return True
        return False

    def _inhibitor(self, rule: CompiledRule, state: CustomerState) -> str | None:
        for other in self.rules.inhibited_by.get(rule.id, ()):
            rec = state.alerts.get(other)
            if rec is not None and rec["s"] == "firing":
                return other
        return None

    def _may_fire(
        self, rule: CompiledRule, state: CustomerState, rec: dict[str, Any] | None, at: float
    ) -> bool:
        spec = rule.rule
        if rec is not None and "snooze" in rec:
            if at < rec["snooze"]:
                return False
            del rec["snooze"]
            if rec["s"] == "idle" and "fires" not in rec:
                del state.alerts[rule.id]  # nothing left to remember
        last = state.last_fired.get(rule.id)
        if last is not None and at < last + spec.cooldown:
            return False
        if spec.max_fires is not None and rec is not None and rec.get("fires"):
            recent = [t for t in rec["fires"] if t > at - spec.max_fires.per]
            rec["fires"] = recent
            if len(recent) >= spec.max_fires.count:
                return False
        return True

    @staticmethod
    def _forget_pending(state: CustomerState, rule_id: str) -> None:
        rec = state.alerts.pop(rule_id)
        memory: dict[str, Any] = {k: rec[k] for k in ("snooze", "fires") if k in rec}
        if memory:
            state.alerts[rule_id] = {"s": "idle", **memory}

    # -- lifecycle steps ------------------------------------------------------------------
    def _fire(
        self, rule: CompiledRule, one: _Pass, rec: dict[str, Any] | None, result: Result
    ) -> None:
        state, at, spec = one.state, one.at, rule.rule
        shown = one.pick(rule.inputs | self._shown[rule.id])
        alert_id = alert_id_for(state.customer_id, rule, at)
        summary = render(spec.summary, shown)
        result.outputs.append(
            self._alert(rule, one, alert_id, "firing", summary, at, None, None, shown)
        )
        record: dict[str, Any] = {"s": "firing", "since": at, "id": alert_id, "sum": summary}
        if not rule.reads_alerts:  # counted by open_high_alerts; a reader never counts itself
            record["sev"] = spec.severity
        if spec.max_fires is not None:
            record["fires"] = [*(rec or {}).get("fires", []), at]
        if spec.task is not None:
            task = self._task(rule, state, alert_id, summary, shown, at)
            record.update(task=task.task_id, title=task.title, tstat="open", tat=at)
            result.outputs.append(task)
        state.alerts[rule.id] = record
        state.last_fired[rule.id] = at
        one.alerts_touched = True
        self._maybe_escalate(rule, one, record, result)

    def _resolve(
        self,
        rule: CompiledRule,
        one: _Pass,
        rec: dict[str, Any],
        result: Result,
        resolution: str,
        snooze_until: float | None = None,
    ) -> None:
        state, at = one.state, one.at
        shown = one.pick(rule.inputs | self._shown[rule.id])
        summary = rec.get("sum", rule.rule.summary)
        result.outputs.append(
            self._alert(
                rule, one, rec["id"], "resolved", summary, rec["since"], at, resolution, shown
            )
        )
        spec = rule.rule.task
        if spec is not None and rec.get("tstat") in OPEN_TASK:
            task = self._task(rule, state, rec["id"], summary, shown, rec["since"])
            title = rec.get("title", task.title)
            result.outputs.append(task.model_copy(update={"status": "cancelled", "title": title}))
        if spec is not None and rec.get("estat") in OPEN_TASK:
            escalation = self._escalation(rule, state, rec, spec, rec["esc_at"])
            result.outputs.append(escalation.model_copy(update={"status": "cancelled"}))
        memory: dict[str, Any] = {k: rec[k] for k in ("fires",) if k in rec}
        if snooze_until is not None:
            memory["snooze"] = snooze_until
        if memory:
            state.alerts[rule.id] = {"s": "idle", **memory}
        else:
            del state.alerts[rule.id]
        one.alerts_touched = True

    @staticmethod
    def _escalation_pending(spec: TaskSpec | None, rec: dict[str, Any]) -> bool:
        return (
            spec is not None
            and spec.escalate_after is not None
            and rec.get("tstat") == "open"
            and "esc" not in rec
        )

    def _maybe_escalate(
        self, rule: CompiledRule, one: _Pass, rec: dict[str, Any], result: Result
    ) -> None:
        spec = rule.rule.task
        if not self._escalation_pending(spec, rec):
            return
        assert spec is not None and spec.escalate_after is not None
        if one.at < rec["tat"] + spec.escalate_after:
            return
        task = self._escalation(rule, one.state, rec, spec, one.at)
        rec.update(esc=task.task_id, estat="open", esc_at=one.at)
        result.outputs.append(task)

    def _task_status(self, state: CustomerState, event: TaskUpdateEvent) -> str | None:
        """Record a CS tool's progress on one of the customer's tasks; the rule id, if known."""
        for rule_id, rec in state.alerts.items():
            if rec.get("task") == event.task_id:
                key = "tstat"
            elif rec.get("esc") == event.task_id:
                key = "estat"
            else:
                continue
            rule = self._by_id.get(rule_id)
            if rule is not None:
                self._upgrade(rule, rec)
            if event.status != "acknowledged":
                rec[key] = event.status
            elif rec.get(key) == "open":
                rec[key] = "ack"
            return rule_id
        return None

    def _snooze(self, one: _Pass, rule_id: str, until: datetime | None, result: Result) -> None:
        """A task dismissed with ``snooze_until``: resolve the alert, hold the rule back."""
        rule = self._by_id.get(rule_id)
        rec = one.state.alerts.get(rule_id)
        if until is None or rule is None or rec is None or rec["s"] != "firing":
            return
        snooze = until.timestamp()
        self._resolve(rule, one, rec, result, "snoozed", snooze if snooze > one.at else None)
        one.state.last_fired.pop(rule_id, None)  # the snooze, not the cooldown, governs
        one.alerts_changed = True
        one.timers = one.timers | {rule_id}  # a snooze already over: evaluate it again now

    # -- output construction --------------------------------------------------------------
    def _alert(
        self,
        rule: CompiledRule,
        one: _Pass,
        alert_id: str,
        status: str,
        summary: str,
        fired_at: float,
        resolved_at: float | None,
        resolution: str | None,
        shown: dict[str, Any],
    ) -> AlertEvent:
        return AlertEvent(
            alert_id=alert_id,
            customer_id=one.state.customer_id,
            rule_id=rule.id,
            severity=rule.rule.severity,
            status=status,
            summary=summary,
            description=render(rule.rule.description, shown),
            evidence=one.pick(rule.inputs),
            labels=rule.rule.labels,
            tier=one.value("tier"),
            fired_at=_ts(fired_at),
            resolved_at=None if resolved_at is None else _ts(resolved_at),
            resolution=resolution,
            emitted_at=_ts(self._wall()),
        )

    def _person(self, state: CustomerState, rule: CompiledRule, role: str) -> tuple[str, str]:
        """Who does a task for ``role``: the account's person, else the fallback."""
        person = state.account.get(role)
        if person:
            return person, role
        if role not in ROLE_FIELDS and rule.rule.task is not None and role in rule.rule.task.cc:
            return role, role  # a cc entry that is a person or team id, not a role
        spec = rule.rule.task
        fallback = spec.fallback if spec is not None and spec.fallback is not None else None
        if fallback is None:
            fallback = list(self.config.fallback_team) or self.config.fallback_assignee
        if isinstance(fallback, list):
            fallback = fallback[int(_digest(state.customer_id, rule.id), 16) % len(fallback)]
        return fallback, "fallback"

    def _due(self, spec: TaskSpec, start: float) -> datetime:
        if spec.business_hours:
            return _ts(self.config.calendar.add(start, spec.due))
        return _ts(start + spec.due)

    def _task(
        self,
        rule: CompiledRule,
        state: CustomerState,
        alert_id: str,
        summary: str,
        shown: dict[str, Any],
        fired_at: float,
    ) -> TaskEvent:
        spec = rule.rule.task
        assert spec is not None
        assignee, role = self._person(state, rule, spec.assignee)
        return TaskEvent(
            task_id="tk-" + _digest(alert_id, spec.assignee),
            alert_id=alert_id,
            customer_id=state.customer_id,
            rule_id=rule.id,
            assignee=assignee,
            assignee_role=role,
            cc=[state.account.get(role, role) for role in spec.cc],
            title=render(spec.title, shown) if spec.title else summary,
            playbook=spec.playbook,
            priority=spec.priority or PRIORITY_BY_SEVERITY[rule.rule.severity],
            due_at=self._due(spec, fired_at),
            status="open",
            created_at=_ts(self._wall()),
        )

    def _escalation(
        self,
        rule: CompiledRule,
        state: CustomerState,
        rec: dict[str, Any],
        spec: TaskSpec,
        at: float,
    ) -> TaskEvent:
        role = spec.cc[0] if spec.cc else spec.assignee
        assignee, assignee_role = self._person(state, rule, role)
        original, _ = self._person(state, rule, spec.assignee)
        return TaskEvent(
            task_id="tk-" + _digest(rec["id"], "escalation"),
            alert_id=rec["id"],
            customer_id=state.customer_id,
            rule_id=rule.id,
            assignee=assignee,
            assignee_role=assignee_role,
            cc=[original],
            title=f"Escalation: {rec.get('title', rec.get('sum', rule.id))}",
            playbook=spec.playbook,
            priority=ESCALATED_PRIORITY[spec.priority or PRIORITY_BY_SEVERITY[rule.rule.severity]],
            due_at=self._due(spec, at),
            status="escalated",
            escalation_of=rec["task"],
            created_at=_ts(self._wall()),
        )


_SCORE_FEATURES = KINDS_CHANGING["scores"]
_SNAPSHOT_SET = frozenset(SNAPSHOT_FEATURES)
SNAPSHOT_MARKS = frozenset(
    {"tier", "lifecycle_stage", "rfm_r_score", "rfm_f_score", "rfm_m_score", "health_score"}
)
"""The scores a snapshot check compares with the last snapshot (with at risk and alerts)."""
_MARK_REASONS = ("tier", "stage", "rfm", "rfm", "rfm", "risk", "alerts")
"""The snapshot reason of each mark (see ``Engine._snapshot``)."""


def _midnight_after(at: float) -> float:
    """The first UTC midnight after ``at``: a daily feature cannot change before it."""
    return (day_of(at) + 1) * DAY


def _cheap_first(names: Iterable[str]) -> tuple[str, ...]:
    """Feature names with those that change only at midnight last (often skipped then)."""
    return tuple(sorted(names, key=lambda n: (FEATURES[n].daily, n)))


def _ascending(
    thresholds: Iterable[tuple[str, Iterable[int]]],
) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """(day counter, its threshold values in ascending order), by counter name."""
    return tuple(sorted((name, tuple(sorted(values))) for name, values in thresholds))


def _scoring_wakeups(
    scoring: CompiledScoring,
) -> tuple[
    tuple[tuple[str, frozenset[int]], ...],
    tuple[tuple[str, tuple[float, ...]], ...],
    tuple[str, ...],
]:
    """What wakes a customer for scoring: (day counter, threshold values) compared only with
    literals, (bare factor feature, its grid steps), and other time-changing inputs."""
    bounds: dict[str, set[float]] = {}
    for f in scoring.factors:
        name = f.bare_feature
        if name is None:
            continue
        timed = FEATURES[name]
        if timed.crosses is not None or (
            timed.reaches is not None and not timed.counts_down
        ):  # every factor on the feature adds its steps
            bounds.setdefault(name, set()).update(
                step.below for step in f.spec.grid if step.below is not None
            )
    grids = {name: tuple(sorted(b)) for name, b in bounds.items()}
    bare = {f.value for f in scoring.factors if f.bare_feature in grids}
    programs = [p for _, p in (*scoring.tiers, *scoring.stages) if p is not None]
    programs += [f.missing_when for f in scoring.factors if f.missing_when is not None]
    programs += [f.value for f in scoring.factors if f.value not in bare]
    programs += [p for _, p, _ in scoring.profiles]
    elsewhere = set().union(*(p.variables() for p in programs))
    grid_only = {n for n in grids if n not in elsewhere}
    others = {n for n in scoring.inputs if n not in scoring.thresholds and n not in grid_only}
    others |= set(scoring.at_risk.variables())  # its flip is a snapshot reason
    return (
        tuple(sorted(scoring.thresholds.items())),
        tuple(sorted((n, g) for n, g in grids.items() if g)),
        tuple(sorted(n for n in others if FEATURES[n].changes_with_time)),
    )


def _template_names(rule: CompiledRule) -> set[str]:
    names = placeholders(rule.rule.summary) | placeholders(rule.rule.description)
    if rule.rule.task is not None and rule.rule.task.title:
        names |= placeholders(rule.rule.task.title)
    return names


def run_batch(
    engine: Engine, states: dict[str, CustomerState], events: Sequence[InputEvent]
) -> Result:
    """Apply a batch of events in order to ``states`` (created on first sight); for replays."""
    total = Result()
    applied = 0
    for event in events:
        state = states.get(event.customer_id)
        if state is None:
            state = states[event.customer_id] = CustomerState(event.customer_id)
        one = engine.apply(state, event)
        applied += one.applied
        total.extend(one)
    total.applied = applied > 0
    return total
