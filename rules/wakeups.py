"""When a customer must be evaluated without an event, and what moved since its last evaluation.

A customer's rule results and scores change by time alone only when a feature they read
changes (a window slides, a day counter steps, a contact ages out) or a lifecycle timer is
due. The next deadline is the earliest such moment; it is searched from the cheap parts
first, and features that change only at midnight UTC are skipped once the best time is no
later than the next midnight. Each feature's next change time is cached per customer for
one state version and carried to the next where the event and the time left it valid; the
cache never changes a result, a miss recomputes.
"""

from __future__ import annotations

from collections.abc import Iterable
from math import inf, nextafter
from typing import Any, Final, cast

import cel

from rules.evaluation import CEL_ERRORS, Evaluation, holds_not
from rules.lifecycle import Lifecycle
from rules.loader import RuleSet
from rules.memo import MISS, Memo
from rules.scoring import CompiledScoring, Scorer
from schemas import EVENT_KINDS
from streams.features import FEATURES, KINDS_CHANGING
from streams.sketch import next_score_change
from streams.state import DAY, CustomerState, day_of

PROBE_DAYS: Final = 120
"""How many days ahead a probe looks for a flip; without one it wakes the customer there."""


class Probe:
    """A day counter that a rule compares with more than literals, and the rule's conditions:
    finds the day the conditions flip as the counter counts up, other inputs as they are.

    Results are cached by the other inputs' values, then by the counter value (the programs
    are pure), so customers alike, and one customer probed again a day later, reuse them.
    The programs run on a CEL context that holds the other inputs: within one search only the
    counter is converted for CEL again (a float or a string costs the bindings more to convert
    than the program costs to run).
    """

    __slots__ = (
        "cache",
        "constant",
        "context",
        "held",
        "limit",
        "name",
        "others",
        "programs",
        "size",
    )

    def __init__(self, name: str, conditions: tuple[Memo, ...], limit: int) -> None:
        self.name = name
        reading = [m for m in conditions if name in m.names]
        # conditions that do not read the counter cannot flip with it; they run once, at
        # the start, for the errors they may raise (a failing run counts as a flip)
        self.constant = tuple(m for m in conditions if name not in m.names)
        self.programs = tuple(m.program for m in reading)
        self.others = tuple(sorted({n for m in reading for n in m.names} - {name}))
        # other inputs' values -> counter value -> the programs' results (None: one failed)
        self.cache: dict[tuple[Any, ...], dict[int, tuple[Any, ...] | None]] = {}
        self.size = 0  # results cached in all
        self.limit = limit
        self.context = cel.Context()
        self.held: tuple[Any, ...] | None = None  # the other inputs' values in the context

    def flip(self, one: Evaluation, best: float) -> float:
        """The earliest of ``best`` and the moment the day counter reaches the first value
        at which one of the conditions gives another result than now.

        The conditions are run on the values the counter will take, one day at a time, up
        to its value at ``best`` or :data:`PROBE_DAYS` ahead; a failing run counts as a flip.
        """
        name = self.name
        feature = FEATURES[name]
        reaches = feature.reaches
        assert reaches is not None
        state, at = one.state, one.at
        start = one.value(name)
        last = start + PROBE_DAYS if best == inf else feature.compute(state, best)
        last = min(last, start + PROBE_DAYS)
        others = tuple([one.value(n) for n in self.others])
        constant_fails = False
        try:
            for memo in self.constant:
                memo.run(one)
        except CEL_ERRORS:
            constant_fails = True
        if self.size >= self.limit:
            self.cache.clear()
            self.size = 0
        known = self.cache.get(others)
        if known is None:
            known = self.cache[others] = {}
        now = None if constant_fails else self._results(known, others, start)
        found = last
        if now is None:  # a failing run counts as a flip: the counter's next value
            found = min(start + 1, last)
        else:
            for counter in range(start + 1, last + 1):
                if self._results(known, others, counter) != now:
                    found = counter
                    break
        t = reaches(state, at, found) if found > start else None
        return t if t is not None and at < t < best else best

    def _results(
        self, known: dict[int, tuple[Any, ...] | None], others: tuple[Any, ...], counter: int
    ) -> tuple[Any, ...] | None:
        """The programs' results with the counter at ``counter`` (None: one failed), noted
        in ``known``, the cache of these other inputs' values."""
        if counter in known:
            return known[counter]
        context = self.context
        found: tuple[Any, ...] | None
        try:
            if self.held is not others:  # the context holds another search's values
                self.held = None
                for n, v in zip(self.others, others, strict=True):
                    context.add_variable(n, v)
                self.held = others
            context.add_variable(self.name, counter)
            found = tuple([program.execute(context) for program in self.programs])
        except CEL_ERRORS:
            found = None
        known[counter] = found
        self.size += 1
        return found


Waker = tuple[
    Memo | None, tuple[tuple[str, tuple[int, ...]], ...], tuple[str, ...], bool, Probe | None
]
"""A time-based rule's guard, own day-counter thresholds, other time inputs, whether all of
them change only at midnight, and the day counter probed for the day its conditions flip."""


def _version(state: CustomerState) -> tuple[float | None, str | None]:
    """Identifies a state: it changes only by an applied event (its id) or an evaluation."""
    return (state.evaluated_at, state.recent_ids[-1] if state.recent_ids else None)


class Timing:
    """Cached next change times of a customer's features, valid for one state version."""

    # a plain class: compiled, a dataclass's generated __init__ stays interpreted
    def __init__(
        self, version: tuple[float | None, str | None], changes: dict[str, float | None]
    ) -> None:
        self.version = version
        self.changes = changes
        self.deadline: float | None = None
        self.has_deadline = False


class Wakeups:
    """Deadlines and change tracking for one rule set; holds only a cache per customer."""

    def __init__(
        self,
        rules: RuleSet,
        lifecycle: Lifecycle,
        snapshot_inputs: frozenset[str],
        cache_size: int,
        scorer: Scorer | None = None,
        recency_read: bool = True,
    ) -> None:
        self._lifecycle = lifecycle
        self._scorer = scorer
        self._recency_read = scorer is not None and recency_read
        # the health trend moves by time alone; only a decision that reads it needs a wake-up
        read = rules.inputs | (rules.scoring.inputs if rules.scoring is not None else frozenset())
        self._trend_read = "health_trend_7d" in read
        self._has_scoring = rules.scoring is not None
        self._timing: dict[str, Timing] = {}
        self._cache_size = cache_size
        scoring = rules.scoring
        score_thresholds, self._score_grids, score_timed = (
            _scoring_wakeups(scoring) if scoring is not None else ((), (), ())
        )
        self._score_thresholds = score_thresholds
        # what rules and scoring read; scoring is skipped while none of its inputs changed
        self.score_inputs = scoring.inputs if scoring is not None else frozenset()
        """The features scoring reads."""
        inputs = rules.inputs | self.score_inputs | snapshot_inputs
        self._time_inputs = frozenset(n for n in inputs if FEATURES[n].changes_with_time)
        self._daily = frozenset(n for n in FEATURES if FEATURES[n].daily)
        # features every event kind may change (first-seen time, pruning): checked by value
        kinds = [names for kind, names in KINDS_CHANGING.items() if kind in EVENT_KINDS]
        self.any_event_set = frozenset.intersection(*kinds) & inputs
        """The inputs every event kind may change: the engine compares their values."""
        self.any_event = tuple(sorted(self.any_event_set))
        # per time-based rule: what can wake it (see next_deadline); the day-counter
        # thresholds of rules without a guard, and scoring's, are searched together
        wakers: list[Waker] = []
        merged: dict[str, set[int]] = {n: set(v) for n, v in score_thresholds}
        for r in rules.rules:
            if not r.time_based:
                continue
            guard = lifecycle.applies_to[r.id] if r.static_guard is not None else None
            if guard is None:
                for name, values in r.thresholds.items():
                    merged.setdefault(name, set()).update(values)
            others = tuple(
                sorted(
                    n for n in r.inputs if FEATURES[n].changes_with_time and n not in r.thresholds
                )
            )
            probe = None
            if len(others) == 1 and not r.thresholds and _probed(others[0]):
                # the only thing time changes is a day counter compared with an expression
                # of what only events change: wake on the day the conditions flip
                probe = Probe(others[0], lifecycle.conditions(r.id), cache_size * 16)
                others = ()
            own = _ascending(r.thresholds.items()) if guard is not None else ()
            if own or others or probe:  # a rule woken by thresholds alone is merged below
                timed = (*others, *dict(own), *([probe.name] if probe else []))
                daily_only = all(FEATURES[n].daily for n in timed)
                wakers.append((guard, own, others, daily_only, probe))
        self._wakers = tuple(wakers)
        self._thresholds = _ascending(merged.items())
        # scoring's time inputs whose changes an unguarded rule's wake-ups already count
        covered = {n for guard, _, others, _, _ in wakers if guard is None for n in others}
        self._score_timed = frozenset(
            n
            for n in score_timed
            if n not in covered
            and not (FEATURES[n].moves_with and covered.issuperset(FEATURES[n].moves_with))
        )
        self._searched = _cheap_first(
            {n for _, _, others, _, _ in wakers for n in others} | self._score_timed
        )

    # -- deadlines -----------------------------------------------------------------------
    def next_deadline(self, state: CustomerState) -> float | None:
        """Earliest future time when this customer's rule results may change by time alone."""
        at = state.evaluated_at
        if at is None:
            return None
        timing = self.timing_of(state)
        if not timing.has_deadline:
            best = self._deadline(state, at, timing.changes, inf)
            timing.deadline = None if best == inf else best
            timing.has_deadline = True
        return timing.deadline

    def due_by(self, state: CustomerState, until: float) -> float | None:
        """The next deadline if it is at or before ``until``, else None (a cheaper search)."""
        at = state.evaluated_at
        if at is None:
            return None
        timing = self.timing_of(state)
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
    def timing_of(self, state: CustomerState) -> Timing:
        """The cached timing of the state as it is now (empty if it changed since)."""
        timing = self._timing.get(state.customer_id)
        if timing is not None and timing.version == _version(state):
            return timing
        return self.timing_for(state, {})

    def remember(
        self, state: CustomerState, timing: Timing, stale: frozenset[str], at: float
    ) -> None:
        """Keep, for the state's new version, what ``stale`` features and time left valid."""
        self.timing_for(
            state,
            {n: t for n, t in timing.changes.items() if n not in stale and (t is None or t > at)},
        )

    def timing_for(self, state: CustomerState, changes: dict[str, float | None]) -> Timing:
        """Start the cache of the state's current version with these next changes."""
        timing = Timing(_version(state), changes)
        if self._cache_size:  # 0: no cache (tests show that it changes no result)
            if len(self._timing) >= self._cache_size * 16:
                self._timing.clear()
            self._timing[state.customer_id] = timing
        return timing

    @staticmethod
    def _change_of(
        state: CustomerState, at: float, name: str, changes: dict[str, float | None]
    ) -> float | None:
        """The feature's next change after ``at``, from ``changes`` or computed into it."""
        known = changes.get(name, MISS)  # one lookup, not ``in`` then ``[]``
        if known is not MISS:
            return cast(float | None, known)
        feature = FEATURES[name]
        if feature.moves_with:  # early is safe: an evaluation that finds nothing changed
            times = [Wakeups._change_of(state, at, n, changes) for n in feature.moves_with]
            t = changes[name] = min((x for x in times if x is not None), default=None)
            return t
        next_change = feature.next_change
        assert next_change is not None
        t = changes[name] = next_change(state, at)
        return t

    # -- what moved since the last evaluation ------------------------------------------------
    def before_event(
        self,
        state: CustomerState,
        previous: float,
        at: float,
        kind_changes: frozenset[str],
        changes: dict[str, float | None],
    ) -> None:
        """Before an event is folded in: the next changes after ``previous`` that the event
        does not make stale, from the state before it (applying it also prunes what aged
        out, and a month that left a window is then no longer there to be seen)."""
        same_day = at < _midnight_after(previous)
        for name in self._time_inputs:
            if same_day and name in self._daily:
                continue  # cannot have changed since ``previous``
            if name not in kind_changes or name in self.any_event_set:
                self._change_of(state, previous, name, changes)

    def _deadline(
        self, state: CustomerState, at: float, changes: dict[str, float | None], best: float
    ) -> float:
        """The earliest wake-up after ``at`` and before ``best``; ``best`` if there is none.

        Cheap parts first: once ``best`` is at or before the next midnight, the features that
        change only at midnight cannot move it.
        """
        for t, _ in self._lifecycle.timers(state):
            if at < t < best:
                best = t
        if self._has_scoring:
            due = state.scores.get("snap_due")
            if due is not None and at < due < best:
                best = due
        midnight = _midnight_after(at)
        best = self._earliest(state, at, changes, self._thresholds, (), best, midnight)
        one = None
        wanted = set(self._score_timed)  # time inputs whose next change may wake it
        for guard, thresholds, others, daily_only, probe in self._wakers:
            if daily_only and best <= midnight:
                continue
            if guard is not None or probe is not None:
                if one is None:
                    one = Evaluation(state, at)
                if guard is not None and holds_not(guard, one):
                    continue  # cannot hold until an event changes the guard
            if thresholds:
                best = self._earliest(state, at, changes, thresholds, (), best, midnight)
            if probe is not None:
                assert one is not None
                best = probe.flip(one, best)
            wanted.update(others)
        # in the order of _searched: the cheap ones first, then what midnight may skip
        others = tuple(n for n in self._searched if n in wanted)
        best = self._earliest(state, at, changes, (), others, best, midnight)
        if self._has_scoring:
            best = self._grid_deadline(state, at, best, midnight)
        if self._scorer is not None and best > midnight:
            if self._recency_read:
                best = self._recency_deadline(state, at, best)
            if self._trend_read:
                best = self._trend_deadline(state, at, best)
        return best

    def _trend_deadline(self, state: CustomerState, at: float, best: float) -> float:
        """The earliest of ``best`` and the midnight a recorded health score leaves the trend
        window (the trend then compares with another score)."""
        assert self._scorer is not None
        days = self._scorer.scoring.spec.health.trend_days
        recorded: list[int] = state.scores.get("hd", [])
        cutoff = day_of(at) - days
        for i in range(0, len(recorded), 2):
            if recorded[i] > cutoff:
                t = (recorded[i] + days) * DAY
                return t if at < t < best else best
        return best

    def _recency_deadline(self, state: CustomerState, at: float, best: float) -> float:
        """The earliest of ``best`` and the midnight the RFM recency score moves by time (a
        snapshot shows it); the other RFM scores change only by orders and cut points."""
        assert self._scorer is not None
        cuts, last = self._scorer.cuts, state.rfm_last_day
        if cuts is None or last is None:
            return best
        step = next_score_change(day_of(at) - last, cuts.recency)
        if step is None:
            return best
        t = (last + step) * DAY
        return t if at < t < best else best

    def _grid_deadline(
        self,
        state: CustomerState,
        at: float,
        best: float,
        midnight: float,
    ) -> float:
        """Earliest time after ``at`` (before ``best``) a score's grid bound may be crossed."""
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

    def changed(
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

    def swept(
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
        keep = set(changed & self.score_inputs)
        for name, values in self._score_thresholds:
            if name in keep and name not in by_event and not FEATURES[name].counts_down:
                compute = FEATURES[name].compute
                low, high = compute(state, previous), compute(state, at)
                if not any(low < v <= high for v in values):
                    keep.discard(name)
        return frozenset(keep)


def _probed(name: str) -> bool:
    """True if the feature is a day counter that counts up, which a rule can be probed on."""
    feature = FEATURES[name]
    return feature.reaches is not None and not feature.counts_down and not feature.moves_with


def _midnight_after(at: float) -> float:
    """The first UTC midnight after ``at``: a daily feature cannot change before it."""
    return (day_of(at) + 1) * DAY


SEARCHED_LAST: Final = frozenset({"login_weeks_declining", "revenue_365d", "revenue_rising"})
"""Midnight-only features whose next change is a search from day to day (or month)."""


def _cheap_first(names: Iterable[str]) -> tuple[str, ...]:
    """Feature names in the order a deadline search takes them: those that change only at
    midnight last (often skipped then), and of those the searches last."""
    return tuple(sorted(names, key=lambda n: (FEATURES[n].daily, n in SEARCHED_LAST, n)))


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
