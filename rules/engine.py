"""The pure core's hot path: fold events into customer state and evaluate the customer.

Everything happens in event time. An event is evaluated at the customer's own high-water
event time; a sweep evaluates a customer at each of its due deadlines. Before an event is
applied, the customer is first advanced through the deadlines that fell due before it, so the
outputs are the same whether or not a sweep happened to run in between: live, replay and
backtest give identical alerts for identical input.

One evaluation scores the customer (rules/snapshots.py), steps the rules whose inputs may
have moved (rules/lifecycle.py), then checks for a health snapshot; what may have moved and
when to wake a customer without an event come from rules/wakeups.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Final

from mypy_extensions import mypyc_attr

from rules.config import EngineConfig
from rules.evaluation import CEL_ERRORS, Evaluation
from rules.lifecycle import Lifecycle
from rules.loader import CompiledRule, RuleSet
from rules.results import Output, Result, RuleError, alert_id_for
from rules.scoring import Scorer
from rules.snapshots import SCORE_FEATURES, TIER_CHANGED, Snapshots
from rules.wakeups import Wakeups
from schemas import InputEvent, TaskUpdateEvent
from streams.features import FEATURES, KINDS_CHANGING
from streams.sketch import CutPoints
from streams.state import CustomerState, apply_event, prune

__all__ = [
    "TIER_CHANGED",
    "Engine",
    "EngineConfig",
    "Output",
    "Result",
    "RuleError",
    "alert_id_for",
    "run_batch",
]

MAX_STEPS_PER_ADVANCE: Final = 1000
MAX_SETTLE_ROUNDS: Final = 3


@mypyc_attr(allow_interpreted_subclasses=True)  # tests derive oracles from it
class Engine:
    """Applies events and deadlines to one customer's state at a time.

    Holds no customer state; only memoised CEL results and per-customer next change times,
    which do not change outputs.
    """

    def __init__(
        self,
        rules: RuleSet,
        config: EngineConfig | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.rules = rules
        self.config = config or EngineConfig()
        self._lifecycle = Lifecycle(rules, self.config, wall_clock)
        scoring = rules.scoring
        shown = frozenset().union(*self._lifecycle.shown.values())
        read = rules.inputs | (rules.scoring.inputs if rules.scoring is not None else frozenset())
        self.scorer = (
            Scorer(
                scoring,
                self.config.memo_size,
                self.config.clv_model,
                read_elsewhere=rules.inputs | shown,
                # the snapshot check is skipped while nothing it reads moved: a new delta
                # makes every customer's next step a full one, and so checks again
                context=f"health delta {self.config.snapshot_health_delta}",
            )
            if scoring is not None
            else None
        )
        self._snapshots = (
            Snapshots(self.scorer, self.config, wall_clock) if self.scorer is not None else None
        )
        snapshot_inputs = (
            self._snapshots.inputs
            if self._snapshots is not None and self.config.snapshots
            else frozenset()
        )
        self._wakeups = Wakeups(
            rules,
            self._lifecycle,
            snapshot_inputs,
            self.config.memo_size,
            self.scorer,
            # the recency score moves by time; only snapshots show it, unless a decision reads it
            recency_read=bool(snapshot_inputs) or "rfm_r_score" in read,
        )
        self._alert_features = tuple(n for n in FEATURES if "alerts" in FEATURES[n].depends_on)
        # per event kind: what it may change, of that what is not compared by value, and
        # what the evaluation after it leaves stale (set operations done once, not per event)
        any_event_set = self._wakeups.any_event_set
        self._by_kind = {
            kind: (changes, changes - any_event_set, changes | any_event_set | SCORE_FEATURES)
            for kind, changes in [*KINDS_CHANGING.items(), ("", frozenset[str]())]
        }
        stepped = tuple(_Stepped(r, r.id in rules.inhibited_by) for r in rules.rules)
        self._stepped = stepped
        self._alert_dependent = tuple(r for r in stepped if r.after_alerts)

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
            task_rule = self._lifecycle.task_status(state, event)
        previous = state.evaluated_at
        at = max(ts, not_before, previous if previous is not None else ts)
        if at > ts:  # a late event: first bring the customer to where its partition is
            result.extend(self.advance(state, at))
            previous = state.evaluated_at
        wakeups = self._wakeups
        timing = wakeups.timing_of(state)
        changes = timing.changes
        by_kind = self._by_kind.get(event.event_kind)
        if by_kind is None:
            by_kind = self._by_kind[""]
        kind_changes, not_compared, stale = by_kind
        if previous is not None and at > previous:
            wakeups.before_event(state, previous, at, kind_changes, changes)
        any_event = wakeups.any_event
        before = [FEATURES[n].compute(state, at) for n in any_event]
        apply_event(state, event, self.config.state, ts)
        moved = [
            n
            for n, old in zip(any_event, before, strict=True)
            if FEATURES[n].compute(state, at) != old
        ]
        # a record may be upgraded by a task update
        one = Evaluation(state, at, alerts_touched=task_rule is not None)
        if task_rule and isinstance(event, TaskUpdateEvent) and event.status == "dismissed":
            self._lifecycle.snooze(one, task_rule, event.snooze_until, result)
        # the features every kind may change moved by the event only if their value did
        by_event = not_compared.union(moved) if moved else not_compared
        changed = self._changed(state, by_event, previous, at, changes)
        swept = wakeups.swept(state, previous, at, changed, by_event)
        result.extend(self._evaluate(one, changed, swept))
        wakeups.remember(state, timing, stale, at)  # what the step moved is stale
        return result

    def advance(self, state: CustomerState, until: float) -> Result:
        """Evaluate the customer at every deadline due at or before ``until``."""
        result = Result()
        wakeups = self._wakeups
        for _ in range(MAX_STEPS_PER_ADVANCE):
            due = wakeups.due_by(state, until)
            if due is None:
                break
            previous = state.evaluated_at
            timing = wakeups.timing_of(state)
            changes = timing.changes
            # what time changed, seen before pruning drops what aged out at ``due``
            changed = self._changed(state, frozenset(), previous, due, changes)
            prune(state, due, self.config.state.horizon_days)
            timers = frozenset(
                r
                for t, r in self._lifecycle.timers(state)
                if t <= due and (previous is None or t > previous)
            )
            one = Evaluation(state, due, timers=timers)
            swept = wakeups.swept(state, previous, due, changed)
            result.extend(self._evaluate(one, changed, swept))
            wakeups.remember(state, timing, SCORE_FEATURES, due)
            if due >= until:  # the next deadline is after this evaluation: none is due
                break
        return result

    def next_deadline(self, state: CustomerState) -> float | None:
        """Earliest future time when this customer's rule results may change by time alone."""
        return self._wakeups.next_deadline(state)

    # -- evaluation ---------------------------------------------------------------------
    def _changed(
        self,
        state: CustomerState,
        by_event: frozenset[str],
        previous: float | None,
        at: float,
        changes: dict[str, float | None],
    ) -> frozenset[str] | None:
        """Features that may differ from the last evaluation; None means "evaluate all"."""
        return self._wakeups.changed(state, by_event, previous, at, changes)

    def _evaluate(
        self,
        one: Evaluation,
        changed: frozenset[str] | None,
        score_changed: frozenset[str] | None = None,
    ) -> Result:
        """Score the customer, step every rule that needs it, then maybe snapshot.

        ``score_changed``: what scoring must consider changed (default: ``changed``).
        """
        started = time.perf_counter()
        result = Result()
        state = one.state
        state.evaluated_at = one.at
        lifecycle = self._lifecycle
        for orphan in [r for r in state.alerts if not lifecycle.known(r)]:
            result.forgotten.append((orphan, state.alerts.pop(orphan).get("id")))
            state.last_fired.pop(orphan, None)
            one.alerts_touched = True
        snapshots = self._snapshots
        scored = None
        if snapshots is None:
            # scores kept while scoring is off go stale: recompute them all when it is back
            state.scores.pop("def", None)
        else:
            scored = snapshots.score(one, changed, score_changed, result)
            changed = scored.changed
        self._round(one, changed, result, self._stepped)
        # an alert that changed late in the pass may concern rules evaluated before it
        # (a rule reading alerts that inhibits another): settle them, a bounded few times
        for _ in range(MAX_SETTLE_ROUNDS):
            if not one.alerts_changed:
                break
            self._round(one, frozenset(), result, self._alert_dependent)
        if snapshots is not None and scored is not None and self.config.snapshots:
            snapshots.check(one, scored, result)
        result.eval_seconds = time.perf_counter() - started
        return result

    def _round(
        self,
        one: Evaluation,
        changed: frozenset[str] | None,
        result: Result,
        rules: tuple[_Stepped, ...],
    ) -> None:
        """Step every rule of ``rules`` that needs it."""
        changed_before = one.alerts_changed
        one.alerts_changed = False
        lifecycle = self._lifecycle
        for stepped in rules:
            if not (
                changed is None
                or not stepped.inputs.isdisjoint(changed)
                or stepped.id in one.timers
            ):
                # only a change of alerts concerns it now
                if not (one.alerts_changed or changed_before):
                    continue
                if not stepped.after_alerts:
                    continue
            result.evaluations += 1
            try:
                if lifecycle.step(stepped.rule, one, result):
                    one.alerts_changed = True
                    one.forget(self._alert_features)  # their values are stale now
            except CEL_ERRORS as exc:
                result.errors.append(RuleError(stepped.id, one.state.customer_id, str(exc)))


class _Stepped:
    """What a rule round reads of a rule, held by the compiled core (a CompiledRule's
    attributes are an interpreted dataclass's)."""

    def __init__(self, rule: CompiledRule, inhibited: bool) -> None:
        self.rule = rule
        self.id: str = rule.id
        self.inputs: frozenset[str] = rule.inputs
        # stepped again when an alert changed late in a pass (reads alerts, or is inhibited)
        self.after_alerts: bool = rule.reads_alerts or inhibited


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
