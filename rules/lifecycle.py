"""The alert lifecycle of one rule for one customer: pending, firing, resolved, snoozed.

Per rule and customer, ``state.alerts[rule_id]`` holds the lifecycle record: ``s`` is
``pending`` (``when`` holds, waiting for ``for``), ``firing``, or ``idle`` (kept only while it
remembers a snooze or recent firings for ``max_fires``). A firing rule with a task gets a task
for a person (and, unacknowledged for long enough, an escalation); what a CS tool reports on
those tasks is recorded here too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from rules.config import EngineConfig
from rules.evaluation import Evaluation
from rules.loader import CompiledRule, RuleSet
from rules.memo import Memo
from rules.model import Priority, TaskSpec
from rules.redaction import without_names
from rules.results import Result, alert_id_for, built, digest, timestamp
from rules.templates import placeholders, render
from schemas import AlertEvent, TaskEvent, TaskUpdateEvent
from schemas.outputs import AlertStatus, Resolution
from streams.state import CustomerState

PRIORITY_BY_SEVERITY: Final[dict[str, Priority]] = {
    "critical": "urgent",
    "high": "high",
    "medium": "medium",
    "low": "low",
    "info": "low",
}
ESCALATED_PRIORITY: Final[dict[str, Priority]] = {
    "low": "medium",
    "medium": "high",
    "high": "urgent",
    "urgent": "urgent",
}
ROLE_FIELDS: Final = frozenset({"owner", "csm"})
OPEN_TASK: Final = ("open", "ack")


class Lifecycle:
    """Moves rules' lifecycle records and builds their alerts and tasks; holds no customer
    state, only the rules' compiled conditions."""

    def __init__(
        self, rules: RuleSet, config: EngineConfig, wall_clock: Callable[[], float]
    ) -> None:
        self.config = config
        self._wall = wall_clock
        self._by_id = {r.id: r for r in rules.rules}
        self._inhibited_by = rules.inhibited_by
        limit = config.memo_size
        self._when = {r.id: Memo(r.when, limit) for r in rules.rules}
        self._resolve_when = {
            r.id: Memo(r.resolve_when, limit) for r in rules.rules if r.resolve_when
        }
        self.applies_to = {r.id: Memo(r.applies_to, limit) for r in rules.rules if r.applies_to}
        """Per rule with an ``applies_to``: its compiled guard."""
        self.shown = {r.id: frozenset(_template_names(r)) for r in rules.rules}
        """Per rule: the features its summary, description and task title show."""

    def conditions(self, rule_id: str) -> tuple[Memo, ...]:
        """The rule's ``when`` and, where it has them, ``resolve_when`` and ``applies_to``,
        compiled: what decides its step besides lifecycle timers and other alerts."""
        optional = (self._resolve_when.get(rule_id), self.applies_to.get(rule_id))
        return (self._when[rule_id], *(m for m in optional if m is not None))

    def known(self, rule_id: str) -> bool:
        """True if the rule is in the pack (a record of another rule is to be forgotten)."""
        return rule_id in self._by_id

    def timers(self, state: CustomerState) -> list[tuple[float, str]]:
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
            # what holds back another firing cannot matter while the alert is firing
            if spec.max_fires is not None and rec.get("fires") and rec["s"] != "firing":
                times.append((rec["fires"][0] + spec.max_fires.per, rule_id))
        for rule_id, last in state.last_fired.items():
            rule = self._by_id.get(rule_id)
            if rule is None or not rule.rule.cooldown:
                continue
            record = state.alerts.get(rule_id)
            if record is None or record["s"] != "firing":
                times.append((last + rule.rule.cooldown, rule_id))
        return times

    # -- one rule's step ------------------------------------------------------------------
    def step(self, rule: CompiledRule, one: Evaluation, result: Result) -> bool:
        """Move one rule's lifecycle for the customer; True if an alert fired or resolved."""
        state, at, spec = one.state, one.at, rule.rule
        rule_id = rule.id  # read once: an interpreted dataclass's cached property
        rec = state.alerts.get(rule_id)
        if rec is not None and self.upgrade(rule, rec):
            one.alerts_touched = True
        status = rec["s"] if rec else "idle"
        applies_to = self.applies_to.get(rule_id)
        applies = applies_to is None or applies_to.run(one) is True
        inhibitor = self._inhibitor(rule_id, state)
        resolve_when = self._resolve_when.get(rule_id)
        resolved = False
        if rec is not None and status == "firing":
            if inhibitor is not None:
                self._resolve(rule, one, rec, result, "inhibited")
                state.last_fired.pop(rule_id, None)  # may fire again once the inhibitor clears
                return True
            if not applies:
                clear = True
            elif resolve_when is not None:
                clear = resolve_when.run(one) is True
            else:
                clear = self._when[rule_id].run(one) is not True
            if not clear:
                rec.pop("clear", None)
            elif at >= rec.setdefault("clear", at) + spec.keep_firing_for:
                self._resolve(rule, one, rec, result, "cleared")
                resolved = True
                rec = state.alerts.get(rule_id)
                status = rec["s"] if rec else "idle"
            if not resolved:
                assert rec is not None
                self._maybe_escalate(rule, one, rec, result)
                return False
        holds = applies and inhibitor is None and self._when[rule_id].run(one) is True
        if holds and resolve_when is not None:
            # both conditions hold: stay resolved (or idle) until resolve_when stops holding,
            # rather than fire and clear again at every evaluation
            holds = resolve_when.run(one) is not True
        if not holds:
            if resolved:
                return True
            if status == "pending":
                self._forget_pending(state, rule_id)
            return False
        if not self._may_fire(rule, state, rec, at):
            return resolved
        if spec.for_ > 0:
            if rec is None or status != "pending":
                state.alerts[rule_id] = {**(rec or {}), "s": "pending", "since": at}
                return resolved
            if at < rec["since"] + spec.for_:
                return resolved
        self._fire(rule, one, rec, result)
        return True

    def upgrade(self, rule: CompiledRule, rec: dict[str, Any]) -> bool:
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

    def _inhibitor(self, rule_id: str, state: CustomerState) -> str | None:
        for other in self._inhibited_by.get(rule_id, ()):
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

    def _shown(self, one: Evaluation, rule: CompiledRule) -> dict[str, Any]:
        """The features the rule's texts and evidence show, names as configured."""
        return self._names(one.pick(rule.inputs | self.shown[rule.id]), one.state)

    def _names(self, values: dict[str, Any], state: CustomerState) -> dict[str, Any]:
        return values if self.config.output_names else without_names(values, state)

    # -- lifecycle steps ------------------------------------------------------------------
    def _fire(
        self, rule: CompiledRule, one: Evaluation, rec: dict[str, Any] | None, result: Result
    ) -> None:
        state, at, spec = one.state, one.at, rule.rule
        texts = self.config.texts
        shown = self._shown(one, rule) if texts else {}
        alert_id = alert_id_for(state.customer_id, rule, at)
        summary = render(spec.summary, shown) if texts else ""
        result.outputs.append(
            self._alert(rule, one, alert_id, "firing", summary, at, None, None, shown)
        )
        record: dict[str, Any] = {"s": "firing", "since": at, "id": alert_id, "sum": summary}
        if not rule.reads_alerts:  # counted by open_high_alerts; a reader never counts itself
            record["sev"] = spec.severity
        if spec.max_fires is not None:
            record["fires"] = [*(rec or {}).get("fires", []), at]
        if spec.task is not None and texts:
            task = self._task(rule, state, alert_id, summary, shown, at)
            record.update(task=task.task_id, title=task.title, tstat="open", tat=at)
            result.outputs.append(task)
        elif spec.task is not None:  # the record a task update finds it by, without the task
            record.update(task=_task_id(alert_id, spec.task), title="", tstat="open", tat=at)
        state.alerts[rule.id] = record
        state.last_fired[rule.id] = at
        one.alerts_touched = True
        self._maybe_escalate(rule, one, record, result)

    def _resolve(
        self,
        rule: CompiledRule,
        one: Evaluation,
        rec: dict[str, Any],
        result: Result,
        resolution: Resolution,
        snooze_until: float | None = None,
    ) -> None:
        state, at = one.state, one.at
        texts = self.config.texts
        shown = self._shown(one, rule) if texts else {}
        summary = rec.get("sum", rule.rule.summary)
        result.outputs.append(
            self._alert(
                rule, one, rec["id"], "resolved", summary, rec["since"], at, resolution, shown
            )
        )
        spec = rule.rule.task if texts else None
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
        self, rule: CompiledRule, one: Evaluation, rec: dict[str, Any], result: Result
    ) -> None:
        spec = rule.rule.task
        if not self._escalation_pending(spec, rec):
            return
        assert spec is not None and spec.escalate_after is not None
        if one.at < rec["tat"] + spec.escalate_after:
            return
        if not self.config.texts:  # the record a task update finds it by, without the task
            rec.update(esc=_escalation_id(rec), estat="open", esc_at=one.at)
            return
        task = self._escalation(rule, one.state, rec, spec, one.at)
        rec.update(esc=task.task_id, estat="open", esc_at=one.at)
        result.outputs.append(task)

    def task_status(self, state: CustomerState, event: TaskUpdateEvent) -> str | None:
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
                self.upgrade(rule, rec)
            if event.status != "acknowledged":
                rec[key] = event.status
            elif rec.get(key) == "open":
                rec[key] = "ack"
            return rule_id
        return None

    def snooze(self, one: Evaluation, rule_id: str, until: datetime | None, result: Result) -> None:
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
        one: Evaluation,
        alert_id: str,
        status: AlertStatus,
        summary: str,
        fired_at: float,
        resolved_at: float | None,
        resolution: Resolution | None,
        shown: dict[str, Any],
    ) -> AlertEvent:
        texts = self.config.texts
        return built(
            AlertEvent,
            alert_id=alert_id,
            customer_id=one.state.customer_id,
            rule_id=rule.id,
            severity=rule.rule.severity,
            status=status,
            summary=summary,
            description=render(rule.rule.description, shown) if texts else "",
            evidence=self._names(one.pick(rule.inputs), one.state) if texts else {},
            labels=dict(rule.rule.labels),
            tier=one.value("tier") if texts else None,
            fired_at=timestamp(fired_at),
            resolved_at=None if resolved_at is None else timestamp(resolved_at),
            resolution=resolution,
            emitted_at=timestamp(self._wall()),
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
            fallback = fallback[int(digest(state.customer_id, rule.id), 16) % len(fallback)]
        return fallback, "fallback"

    def _due(self, spec: TaskSpec, start: float) -> datetime:
        if spec.business_hours:
            return timestamp(self.config.calendar.add(start, spec.due))
        return timestamp(start + spec.due)

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
        return built(
            TaskEvent,
            task_id=_task_id(alert_id, spec),
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
            escalation_of=None,
            created_at=timestamp(self._wall()),
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
        return built(
            TaskEvent,
            task_id=_escalation_id(rec),
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
            created_at=timestamp(self._wall()),
        )


def _task_id(alert_id: str, spec: TaskSpec) -> str:
    return "tk-" + digest(alert_id, spec.assignee)


def _escalation_id(rec: dict[str, Any]) -> str:
    return "tk-" + digest(rec["id"], "escalation")


def _template_names(rule: CompiledRule) -> set[str]:
    names = placeholders(rule.rule.summary) | placeholders(rule.rule.description)
    if rule.rule.task is not None and rule.rule.task.title:
        names |= placeholders(rule.rule.task.title)
    return names
