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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import cel

from rules.calendar import BusinessCalendar
from rules.loader import CompiledRule, RuleSet
from rules.model import TaskSpec
from rules.templates import placeholders, render
from schemas import EVENT_KINDS, AlertEvent, InputEvent, TaskEvent, TaskUpdateEvent
from streams.features import FEATURES, KINDS_CHANGING
from streams.state import CustomerState, StateConfig, apply_event, prune

Output = AlertEvent | TaskEvent
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
_MISS = object()


@dataclass(frozen=True)
class EngineConfig:
    """Knobs of the engine beyond state keeping."""

    state: StateConfig = field(default_factory=StateConfig)
    fallback_assignee: str = "cs-queue"
    fallback_team: tuple[str, ...] = ()
    calendar: BusinessCalendar = field(default_factory=BusinessCalendar)
    memo_size: int = 4096


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
    outputs: list[Output] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    evaluations: int = 0
    eval_seconds: float = 0.0
    # (rule id, alert id) of lifecycle records of rules no longer in the pack, dropped
    forgotten: list[tuple[str, str | None]] = field(default_factory=list)

    def extend(self, other: Result) -> None:
        """Append another result's outputs and errors."""
        self.outputs.extend(other.outputs)
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


class _Memo:
    """A CEL program with its results memoised on its input values (programs are pure)."""

    __slots__ = ("cache", "limit", "names", "program")

    def __init__(self, program: cel.Program, limit: int) -> None:
        self.program = program
        self.names = tuple(sorted(program.variables()))
        self.cache: dict[tuple[Any, ...], Any] = {}
        self.limit = limit

    def run(self, value: Callable[[str], Any]) -> Any:
        key = tuple(value(n) for n in self.names)
        hit = self.cache.get(key, _MISS)
        if hit is _MISS:
            hit = self.program.execute(dict(zip(self.names, key, strict=True)))
            if len(self.cache) >= self.limit:
                self.cache.clear()
            self.cache[key] = hit
        return hit


@dataclass
class _Pass:
    """One evaluation of one customer at one time: lazily computed feature values."""

    state: CustomerState
    at: float
    values: dict[str, Any] = field(default_factory=dict)
    alerts_changed: bool = False
    timers: frozenset[str] = frozenset()  # rules whose lifecycle timer is due

    def value(self, name: str) -> Any:
        found = self.values.get(name, _MISS)
        if found is _MISS:
            found = self.values[name] = FEATURES[name].compute(self.state, self.at)
        return found

    def pick(self, names: frozenset[str]) -> dict[str, Any]:
        return {n: self.value(n) for n in sorted(names)}


def _holds_not(guard: _Memo, one: _Pass) -> bool:
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
        self._when = {r.id: _Memo(r.when, limit) for r in rules.rules}
        self._resolve_when = {
            r.id: _Memo(r.resolve_when, limit) for r in rules.rules if r.resolve_when
        }
        self._applies_to = {r.id: _Memo(r.applies_to, limit) for r in rules.rules if r.applies_to}
        self._shown = {r.id: frozenset(_template_names(r)) for r in rules.rules}
        self._timing: dict[str, _Timing] = {}
        # features every event kind may change (first-seen time, pruning): checked by value
        kinds = [names for kind, names in KINDS_CHANGING.items() if kind in EVENT_KINDS]
        self._any_event_set = frozenset.intersection(*kinds) & rules.inputs
        self._alert_features = tuple(n for n in FEATURES if "alerts" in FEATURES[n].depends_on)
        self._alert_dependent = tuple(
            r for r in rules.rules if r.reads_alerts or r.id in rules.inhibited_by
        )
        self._any_event = tuple(sorted(self._any_event_set))
        self._any_event_timed = tuple(n for n in self._any_event if n in rules.time_inputs)
        # per time-based rule: what can wake it (see next_deadline)
        self._wakers = tuple(
            (
                self._applies_to[r.id] if r.static_guard is not None else None,
                tuple(sorted(r.thresholds.items())),
                tuple(
                    sorted(
                        n
                        for n in r.inputs
                        if FEATURES[n].changes_with_time and n not in r.thresholds
                    )
                ),
            )
            for r in rules.rules
            if r.time_based
        )

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
        changes = self._timing_of(state).changes
        if previous is not None:  # the time check of these needs the state before the event
            for name in self._any_event_timed:
                self._change_of(state, previous, name, changes)
        before = [FEATURES[n].compute(state, at) for n in self._any_event]
        apply_event(state, event, self.config.state)
        moved = frozenset(
            n
            for n, old in zip(self._any_event, before, strict=True)
            if FEATURES[n].compute(state, at) != old
        )
        one = _Pass(state, at)
        if isinstance(event, TaskUpdateEvent) and event.status == "dismissed" and task_rule:
            self._snooze(one, task_rule, event.snooze_until, result)
        kind_changes = KINDS_CHANGING.get(event.event_kind, frozenset())
        changed = self._changed(state, kind_changes, previous, at, moved, changes)
        result.extend(self._evaluate(one, changed))
        stale = kind_changes | self._any_event_set
        self._remember(state, {n: t for n, t in changes.items() if n not in stale}, at)
        return result

    def advance(self, state: CustomerState, until: float) -> Result:
        """Evaluate the customer at every deadline due at or before ``until``."""
        result = Result()
        for _ in range(MAX_STEPS_PER_ADVANCE):
            due = self.next_deadline(state)
            if due is None or due > until:
                break
            previous = state.evaluated_at
            changes = self._timing_of(state).changes
            prune(state, due, self.config.state.horizon_days)
            changed = self._changed(state, frozenset(), previous, due, frozenset(), changes)
            timers = frozenset(
                r
                for t, r in self._lifecycle_times(state)
                if t <= due and (previous is None or t > previous)
            )
            result.extend(self._evaluate(_Pass(state, due, timers=timers), changed))
            self._remember(state, changes, due)
        return result

    def next_deadline(self, state: CustomerState) -> float | None:
        """Earliest future time when this customer's rule results may change by time alone."""
        at = state.evaluated_at
        if at is None:
            return None
        timing = self._timing_of(state)
        if not timing.has_deadline:
            timing.deadline = self._next_deadline(state, at, timing.changes)
            timing.has_deadline = True
        return timing.deadline

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

    def _remember(self, state: CustomerState, changes: dict[str, float | None], at: float) -> None:
        valid = {n: t for n, t in changes.items() if t is None or t > at}
        self._timing_for(state, valid)

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
        next_change = FEATURES[name].next_change
        assert next_change is not None
        t = changes[name] = next_change(state, at)
        return t

    def _next_deadline(
        self, state: CustomerState, at: float, changes: dict[str, float | None]
    ) -> float | None:
        best = float("inf")
        one = _Pass(state, at)
        for guard, thresholds, others in self._wakers:
            if guard is not None and _holds_not(guard, one):
                continue  # cannot hold until an event changes the guard
            for name, values in thresholds:
                reaches = FEATURES[name].reaches
                assert reaches is not None
                for value in values:
                    t = reaches(state, at, value)
                    if t is not None and at < t < best:
                        best = t
            for name in others:
                t = self._change_of(state, at, name, changes)
                if t is not None and at < t < best:
                    best = t
        for t, _ in self._lifecycle_times(state):
            if at < t < best:
                best = t
        return None if best == float("inf") else best

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
        by_kind: frozenset[str],
        previous: float | None,
        at: float,
        moved: frozenset[str],
        changes: dict[str, float | None],
    ) -> frozenset[str] | None:
        """Features that may differ from the last evaluation; None means "evaluate all".

        ``by_kind``: what the event's kind may change; ``moved``: which of the features every
        kind may change did change; ``changes``: known next change times at ``previous``.
        """
        if previous is None:
            return None
        changed = set(by_kind - self._any_event_set) | moved
        if at > previous:
            for name in self.rules.time_inputs:
                if name not in changed:
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
    def _evaluate(self, one: _Pass, changed: frozenset[str] | None) -> Result:
        started = time.perf_counter()
        result = Result()
        one.state.evaluated_at = one.at
        for orphan in [r for r in one.state.alerts if r not in self._by_id]:
            result.forgotten.append((orphan, one.state.alerts.pop(orphan).get("id")))
            one.state.last_fired.pop(orphan, None)
        self._round(one, changed, result, self.rules.rules)
        # an alert that changed late in the pass may concern rules evaluated before it
        # (a rule reading alerts that inhibits another): settle them, a bounded few times
        for _ in range(MAX_SETTLE_ROUNDS):
            if not one.alerts_changed:
                break
            self._round(one, frozenset(), result, self._alert_dependent)
        result.eval_seconds = time.perf_counter() - started
        return result

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
        if rec is not None:
            self._upgrade(rule, rec)
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

    def _upgrade(self, rule: CompiledRule, rec: dict[str, Any]) -> None:
        """Fill in what records written by an older version lack (task status, severity)."""
        if rec["s"] != "firing":
            return
        if "task" in rec and "tstat" not in rec:
            rec["tstat"] = "open"
            rec["tat"] = rec["since"]
        if "sev" not in rec and not rule.reads_alerts:
            rec["sev"] = rule.rule.severity

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
            tier=FEATURES["tier"].compute(one.state, one.at),
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
