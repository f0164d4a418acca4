"""The pure core: fold events into customer state, evaluate rules, run the alert lifecycle.

Everything happens in event time. An event is evaluated at the customer's own high-water
event time; a sweep evaluates a customer at each of its due deadlines. Before an event is
applied, the customer is first advanced through the deadlines that fell due before it, so the
outputs are the same whether or not a sweep happened to run in between: live, replay and
backtest give identical alerts for identical input.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rules.loader import CompiledRule, RuleSet
from rules.templates import placeholders, render
from schemas import AlertEvent, InputEvent, TaskEvent
from streams.features import FEATURES, next_change
from streams.state import CustomerState, StateConfig, apply_event, prune

Output = AlertEvent | TaskEvent
MAX_STEPS_PER_ADVANCE = 1000
PRIORITY_BY_SEVERITY = {
    "critical": "urgent",
    "high": "high",
    "medium": "medium",
    "low": "low",
    "info": "low",
}


@dataclass(frozen=True)
class EngineConfig:
    """Knobs of the engine beyond state keeping."""

    state: StateConfig = field(default_factory=StateConfig)
    fallback_assignee: str = "cs-queue"


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

    def extend(self, other: Result) -> None:
        """Append another result's outputs and errors."""
        self.outputs.extend(other.outputs)
        self.errors.extend(other.errors)
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


class Engine:
    """Applies events and deadlines to one customer's state at a time; holds no state itself."""

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
        self._extra_inputs = {
            r.id: frozenset(placeholders(r.rule.summary) | placeholders(r.rule.task.title or ""))
            if r.rule.task
            else frozenset(placeholders(r.rule.summary))
            for r in rules.rules
        }

    # -- entry points -------------------------------------------------------------------
    def apply(self, state: CustomerState, event: InputEvent) -> Result:
        """Advance to the event's time, fold it in, evaluate; no-op for a seen event_id."""
        if state.seen(event.event_id):
            return Result(applied=False)
        ts = event.occurred_at.timestamp()
        result = self.advance(state, ts)
        apply_event(state, event, self.config.state)
        at = ts if state.evaluated_at is None else max(state.evaluated_at, ts)
        result.extend(self._evaluate(state, at))
        return result

    def advance(self, state: CustomerState, until: float) -> Result:
        """Evaluate the customer at every deadline due at or before ``until``."""
        result = Result()
        for _ in range(MAX_STEPS_PER_ADVANCE):
            due = self.next_deadline(state)
            if due is None or due > until:
                break
            prune(state, due, self.config.state.horizon_days)
            result.extend(self._evaluate(state, due))
        return result

    def next_deadline(self, state: CustomerState) -> float | None:
        """Earliest future time when this customer's rule results may change by time alone."""
        at = state.evaluated_at
        if at is None:
            return None
        candidates = []
        feature_due = next_change(state, at, self.rules.time_inputs)
        if feature_due is not None:
            candidates.append(feature_due)
        for rule_id, alert in state.alerts.items():
            rule = self._by_id.get(rule_id)
            if rule is not None and alert["s"] == "pending":
                candidates.append(alert["since"] + rule.rule.for_)
        for rule_id, last in state.last_fired.items():
            rule = self._by_id.get(rule_id)
            if rule is not None and last + rule.rule.cooldown > at:
                candidates.append(last + rule.rule.cooldown)
        return min(candidates) if candidates else None

    # -- evaluation ---------------------------------------------------------------------
    def _evaluate(self, state: CustomerState, at: float) -> Result:
        started = time.perf_counter()
        result = Result()
        state.evaluated_at = at
        values: dict[str, Any] = {}

        def activation(names: frozenset[str]) -> dict[str, Any]:
            for name in names:
                if name not in values:
                    values[name] = FEATURES[name].compute(state, at)
            return {n: values[n] for n in names}

        for rule in self.rules.rules:
            result.evaluations += 1
            try:
                self._step(rule, state, at, activation, result)
            except (RuntimeError, TypeError, ValueError, KeyError) as exc:
                result.errors.append(RuleError(rule.id, state.customer_id, str(exc)))
        result.eval_seconds = time.perf_counter() - started
        return result

    def _step(
        self,
        rule: CompiledRule,
        state: CustomerState,
        at: float,
        activation: Callable[[frozenset[str]], dict[str, Any]],
        result: Result,
    ) -> None:
        act = activation(rule.inputs)
        applies = rule.applies_to is None or rule.applies_to.execute(act) is True
        holds = applies and rule.when.execute(act) is True
        alert = state.alerts.get(rule.id)
        if alert is not None and alert["s"] == "firing":
            if rule.resolve_when is not None:
                resolved = rule.resolve_when.execute(act) is True or not applies
            else:
                resolved = not holds
            if resolved:
                self._resolve(rule, state, alert, at, activation, result)
            return
        if not holds:
            state.alerts.pop(rule.id, None)  # pending ends
            return
        last = state.last_fired.get(rule.id)
        if last is not None and at < last + rule.rule.cooldown:
            return
        if rule.rule.for_ > 0:
            if alert is None:
                state.alerts[rule.id] = {"s": "pending", "since": at}
                return
            if at < alert["since"] + rule.rule.for_:
                return
        self._fire(rule, state, at, activation, result)

    def _fire(
        self,
        rule: CompiledRule,
        state: CustomerState,
        at: float,
        activation: Callable[[frozenset[str]], dict[str, Any]],
        result: Result,
    ) -> None:
        evidence = activation(rule.inputs)
        shown = {**evidence, **activation(self._extra_inputs[rule.id])}
        alert_id = alert_id_for(state.customer_id, rule, at)
        summary = render(rule.rule.summary, shown)
        alert = self._alert(rule, state, alert_id, "firing", summary, evidence, at, None)
        result.outputs.append(alert)
        record: dict[str, Any] = {"s": "firing", "since": at, "id": alert_id, "sum": summary}
        if rule.rule.task is not None:
            task = self._task(rule, state, alert_id, summary, shown, at)
            record["task"] = task.task_id
            record["title"] = task.title
            result.outputs.append(task)
        state.alerts[rule.id] = record
        state.last_fired[rule.id] = at

    def _resolve(
        self,
        rule: CompiledRule,
        state: CustomerState,
        alert: dict[str, Any],
        at: float,
        activation: Callable[[frozenset[str]], dict[str, Any]],
        result: Result,
    ) -> None:
        evidence = activation(rule.inputs)
        summary = alert.get("sum", rule.rule.summary)
        result.outputs.append(
            self._alert(rule, state, alert["id"], "resolved", summary, evidence, alert["since"], at)
        )
        task_id = alert.get("task")
        if task_id and rule.rule.task is not None:
            task = self._task(rule, state, alert["id"], summary, evidence, alert["since"])
            opened_title = alert.get("title", task.title)
            result.outputs.append(
                task.model_copy(update={"status": "cancelled", "title": opened_title})
            )
        del state.alerts[rule.id]

    # -- output construction --------------------------------------------------------------
    def _alert(
        self,
        rule: CompiledRule,
        state: CustomerState,
        alert_id: str,
        status: str,
        summary: str,
        evidence: dict[str, Any],
        fired_at: float,
        resolved_at: float | None,
    ) -> AlertEvent:
        return AlertEvent(
            alert_id=alert_id,
            customer_id=state.customer_id,
            rule_id=rule.id,
            severity=rule.rule.severity,
            status=status,
            summary=summary,
            evidence=evidence,
            labels=rule.rule.labels,
            tier=FEATURES["tier"].compute(state, fired_at),
            fired_at=_ts(fired_at),
            resolved_at=None if resolved_at is None else _ts(resolved_at),
            emitted_at=_ts(self._wall()),
        )

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
        person = state.account.get(spec.assignee)
        return TaskEvent(
            task_id="tk-" + _digest(alert_id, spec.assignee),
            alert_id=alert_id,
            customer_id=state.customer_id,
            rule_id=rule.id,
            assignee=person or self.config.fallback_assignee,
            assignee_role=spec.assignee if person else "fallback",
            cc=[state.account.get(role, role) for role in spec.cc],
            title=render(spec.title, shown) if spec.title else summary,
            playbook=spec.playbook,
            priority=spec.priority or PRIORITY_BY_SEVERITY[rule.rule.severity],
            due_at=_ts(fired_at + spec.due),
            status="open",
            created_at=_ts(self._wall()),
        )


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
