"""Scoring, compiled and run: RFM scores, CLV, lifecycle stage, health score and value tier.

One scoring step runs at the start of every evaluation of a customer (an event or a deadline),
before the rules, so rules read its results as features (``tier``, ``health_score``, …). It
is pure: the same state, time, cut points and CLV model give the same scores.

Order within a step: RFM scores and CLV (from the state alone), then the lifecycle stage,
then the health score (its profile may depend on the stage), then the tier (may read all of
them). Definitions are checked to read only what is computed before them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import cel

from rules.memo import MISS, Memo, Values, discard, values_of
from rules.scoring_model import Factor, Scoring
from streams.caches import remember
from streams.clv import ClvModel, clv, expected_purchases, p_alive
from streams.features import FEATURES, purchase_history
from streams.sketch import CutPoints
from streams.state import CustomerState, day_of

TIER_FEATURES: Final = frozenset(
    {"tier", "previous_tier", "tier_downgraded", "days_since_tier_change"}
)
HEALTH_FEATURES: Final = frozenset({"health_score", "health_trend_7d"})
STAGE_FEATURES: Final = frozenset({"lifecycle_stage"})
NOT_READABLE: Final = {
    "lifecycle": TIER_FEATURES | HEALTH_FEATURES | STAGE_FEATURES,
    "health": TIER_FEATURES | HEALTH_FEATURES,
    "tiers": TIER_FEATURES,
    "at_risk": frozenset[str](),
}
"""Per section: the scores it may not read, because they are computed after it."""

SCORE_KEYS: Final = {
    "tier": "tier",
    "prev_tier": "previous_tier",
    "downgraded": "tier_downgraded",
    "tier_since": "days_since_tier_change",
    "health": "health_score",
    "trend": "health_trend_7d",
    "stage": "lifecycle_stage",
    "r": "rfm_r_score",
    "f": "rfm_f_score",
    "m": "rfm_m_score",
    "eo90": "expected_orders_90d",
    "p_alive": "p_alive",
    "clv": "clv_12m",
}
"""Key in ``state.scores`` → the feature that shows it."""


@dataclass(frozen=True)
class CompiledFactor:
    """A health factor with its CEL programs compiled."""

    spec: Factor
    value: cel.Program
    missing_when: cel.Program | None
    # the feature the value is, when it is one bare feature: its grid bounds are wake-ups
    bare_feature: str | None


@dataclass(frozen=True)
class CompiledScoring:
    """Scoring definitions with their CEL programs compiled."""

    spec: Scoring
    tiers: tuple[tuple[str, cel.Program | None], ...]
    stages: tuple[tuple[str, cel.Program | None], ...]
    factors: tuple[CompiledFactor, ...]
    profiles: tuple[tuple[str, cel.Program, dict[str, int]], ...]
    at_risk: cel.Program
    source: str
    # features read by tiers, stages, factors and profiles, and those that change with time
    inputs: frozenset[str] = field(default=frozenset())
    # per time-changing feature: integer values where a tier/stage comparison flips
    thresholds: dict[str, frozenset[int]] = field(default_factory=dict)

    @property
    def rank(self) -> dict[str, int]:
        """Tier id → position, 0 for the highest tier."""
        return {tier_id: i for i, (tier_id, _) in enumerate(self.tiers)}


class ScoreOutcome:
    """What one scoring step changed."""

    # plain classes, not dataclasses: compiled, a dataclass's generated __init__ stays
    # interpreted, and these are made at every step and snapshot
    def __init__(self) -> None:
        self.changed: set[str] = set()  # features whose value changed
        self.tier_change: tuple[str, str] | None = None  # (from, to)
        self.errors: list[tuple[str, str]] = []  # (part, message)
        self.full = False  # every part was recomputed (first step, new definitions, override)


class FactorShare:
    """One health factor's part in the score, as a snapshot shows it."""

    def __init__(
        self,
        factor: str,
        value: float | None,
        points: int,
        missing: bool,  # no data: the points are the missing-data policy's
        weight: float,  # scaled so the weights of the factors with data sum to 100
        contribution: float,
    ) -> None:
        self.factor = factor
        self.value = value
        self.points = points
        self.missing = missing
        self.weight = weight
        self.contribution = contribution


def points_for(factor: Factor, value: float) -> int:
    """Points of ``value`` on the factor's grid."""
    return _points_on(_grid_of(factor), value)


Grid = tuple[tuple[Any, int], ...]
"""A factor's grid as (below, points) steps; ``below`` as the definition has it (None, int
or float)."""


def _grid_of(factor: Factor) -> Grid:
    return tuple((step.below, step.points) for step in factor.grid)


def _points_on(grid: Grid, value: float) -> int:
    for below, points in grid:
        if below is None or value < below:
            return points
    return grid[-1][1]


_CEL_ERRORS: Final = (RuntimeError, TypeError, ValueError, KeyError, ArithmeticError)


def _names(*programs: cel.Program | None) -> frozenset[str]:
    return frozenset().union(*(set(p.variables()) for p in programs if p is not None))


class Scorer:
    """Runs the scoring step for one customer at a time; holds no customer state.

    A step recomputes only the parts (stage, profile, each factor, tier) whose inputs may
    have changed; the others keep their stored results, so the outcome is the same as
    recomputing everything. ``read_elsewhere``: features the rules read (conditions and
    templates); CLV is computed in every step only when they, or scoring itself, read it.
    ``context``: anything else stored scores depend on; when it differs, the next step is full.
    """

    def __init__(
        self,
        scoring: CompiledScoring,
        memo_size: int = 4096,
        model: ClvModel | None = None,
        cuts: CutPoints | None = None,
        read_elsewhere: frozenset[str] = frozenset(),
        context: str = "",
    ) -> None:
        self.scoring = scoring
        self.model = model
        self._memo_size = memo_size
        # (profile, *factor entries) → what _shares gives for them
        self._shares_memo: dict[tuple[Any, ...], Any] = {}
        self._rounded: dict[float, float] = {}  # factor value → as shown
        self._tiers = [(t, Memo(p, memo_size) if p else None) for t, p in scoring.tiers]
        self._stages = [(s, Memo(p, memo_size) if p else None) for s, p in scoring.stages]
        self._factors = [
            (
                f,
                Memo(f.value, memo_size),
                Memo(f.missing_when, memo_size) if f.missing_when else None,
                _names(f.value, f.missing_when),
            )
            for f in scoring.factors
        ]
        self._grids = [_grid_of(f.spec) for f in scoring.factors]  # read natively
        self._profiles = [(i, Memo(p, memo_size), w) for i, p, w in scoring.profiles]
        self._profile_choices: list[tuple[str, Memo | None]] = [
            (i, applies) for i, applies, _ in self._profiles
        ]
        self._stage_inputs = _names(*(p for _, p in scoring.stages))
        self._tier_inputs = _names(*(p for _, p in scoring.tiers))
        self._profile_inputs = _names(*(p for _, p, _ in scoring.profiles))
        self._default_weights = {f.spec.id: f.spec.weight for f in scoring.factors}
        self._rank = scoring.rank
        self._at_risk = Memo(scoring.at_risk, memo_size)
        self._bg = model.bg() if model else None
        self._gg = model.gg() if model else None
        # CLV that nothing reads is computed for snapshots only (it moves every day)
        read = scoring.inputs | _names(scoring.at_risk) | read_elsewhere
        self.clv_eager = not CLV_FEATURES.isdisjoint(read)
        # stored parts computed under other definitions (or another layout of the stored
        # scores, SCORES_LAYOUT) are recomputed in full
        self._digest = hashlib.blake2b(
            (SCORES_LAYOUT + context + scoring.spec.model_dump_json()).encode(), digest_size=6
        ).hexdigest()
        self._cuts_digest: str | None = None
        self.cuts = cuts

    @property
    def cuts(self) -> CutPoints | None:
        """The population cut points RFM scores use (None: not known yet)."""
        return self._cuts

    @cuts.setter
    def cuts(self, cuts: CutPoints | None) -> None:
        self._cuts = cuts
        self._cuts_digest = (
            None
            if cuts is None
            else hashlib.blake2b(
                repr((cuts.recency, cuts.frequency, cuts.monetary)).encode(), digest_size=6
            ).hexdigest()
        )

    def at_risk(self, value: Values | Callable[[str], Any]) -> bool:
        """The at-risk flag for the customer's current features (False if it fails)."""
        try:
            return self._at_risk.run(values_of(value)) is True
        except _CEL_ERRORS:
            return False

    def step(
        self,
        state: CustomerState,
        at: float,
        value: Values | Callable[[str], Any],
        changed: frozenset[str] | None = None,
    ) -> ScoreOutcome:
        """Recompute the customer's scores at ``at`` into ``state.scores``.

        ``value(name)`` gives feature values at ``at``; score features are read from the
        scores being computed. ``changed``: the features that may have changed since the
        last step (None: any). A part that fails keeps its previous result; the error is in
        the outcome.
        """
        old = state.scores
        new: dict[str, Any] = dict(old)
        if old.get("def") != self._digest:
            _from_layout_1(new)
        outcome = ScoreOutcome()
        rfm_moved = old.get("def") != self._digest  # its layout may have been brought up
        try:
            rfm_moved = self._rfm(state, at, new) or rfm_moved
        except (ValueError, ArithmeticError) as exc:  # a model that does not fit this customer
            outcome.errors.append(("clv", str(exc)))
            rfm_moved = True
        override = state.account.get("tier_override")
        full = (
            changed is None
            or "fp" not in old
            or old.get("ovr") != override
            or old.get("def") != self._digest
        )
        outcome.full = full
        new["def"] = self._digest
        if override is None:
            discard(new, ("ovr",))
        else:
            new["ovr"] = override
        moved = set(changed or ())
        if rfm_moved:
            for key in _RFM_KEYS:
                if new.get(key) != old.get(key):
                    moved.add(SCORE_KEYS[key])

        # a reader object, not a closure: compiled, nested functions share an environment
        # object that refers back to them, and each step would leave a cycle for the GC
        read = _ScoreReader(state, at, new, values_of(value))
        if full or not moved.isdisjoint(self._stage_inputs):
            new["stage"] = _chosen(outcome, "lifecycle", self._stages, read, old.get("stage", ""))
            if new["stage"] != old.get("stage"):
                moved.add("lifecycle_stage")
        rescore = full
        if full or not moved.isdisjoint(self._profile_inputs):
            new["profile"] = _chosen(
                outcome, "profile", self._profile_choices, read, old.get("profile", ""), ""
            )
            rescore = rescore or new["profile"] != old.get("profile")
        # a full step starts afresh: factors of earlier definitions must not linger
        points: list[Any] = [None] * len(self._factors) if full else list(old["fp"])
        for i, (factor, value_of, missing_of, inputs) in enumerate(self._factors):
            if full or not moved.isdisjoint(inputs):
                try:
                    entry = self._factor(factor, value_of, missing_of, read, self._grids[i])
                except _CEL_ERRORS as exc:
                    outcome.errors.append((f"health.{factor.spec.id}", str(exc)))
                    entry = points[i]
                if not rescore and entry != points[i]:
                    rescore = True
                points[i] = entry
        new["fp"] = points
        if rescore or "health" not in new:
            new["health"] = self._health(points, new.get("profile", ""))
        self._trend(new, new["health"], at)
        for key in ("health", "trend"):
            if new[key] != old.get(key):
                moved.add(SCORE_KEYS[key])
        before: str | None = old.get("tier")
        fallback = before if before is not None else self.scoring.tiers[-1][0]
        tier: str = fallback
        if override is not None and override in self._rank:
            tier = override
        elif full or not moved.isdisjoint(self._tier_inputs):
            tier = _chosen(outcome, "tiers", self._tiers, read, fallback)
        if before is not None and before != tier:
            new["prev_tier"] = before
            new["tier_since"] = at
            new["downgraded"] = self._rank.get(tier, 0) > self._rank.get(before, 0)
            outcome.tier_change = (before, tier)
        new["tier"] = tier
        outcome.changed = {
            feature for key, feature in SCORE_KEYS.items() if new.get(key) != old.get(key)
        }
        state.scores = new
        return outcome

    def _factor(
        self,
        compiled: CompiledFactor,
        value_of: Memo,
        missing_of: Memo | None,
        read: Values,
        grid: Grid,
    ) -> int | list[int] | None:
        """The factor's stored entry (see :data:`SCORES_LAYOUT`)."""
        factor = compiled.spec
        if missing_of is not None and missing_of.run(read) is True:
            policy = (
                factor.missing if factor.missing is not None else self.scoring.spec.health.missing
            )
            return None if policy == "exclude" else [int(policy)]
        return _points_on(grid, self._value(compiled, value_of, read))

    @staticmethod
    def _value(compiled: CompiledFactor, value_of: Memo, read: Values) -> float:
        if compiled.bare_feature is not None:  # no CEL round trip for a feature as it is
            return float(read.value(compiled.bare_feature))
        return float(value_of.run(read))

    def _rfm(self, state: CustomerState, at: float, new: dict[str, Any]) -> bool:
        """RFM scores (and CLV when something reads it) for the purchase history at ``at``;
        False if they were left as they were."""
        if state.rfm_first_day is None:
            return discard(new, ("r", "f", "m", "eo90", "p_alive", "clv", "clv_key", "rfm_key"))
        cuts = self.cuts
        # the history changes only by an order or a new day: same key, same scores
        rfm_key = [
            state.rfm_first_day,
            state.rfm_last_day,
            state.rfm_days,
            state.rfm_repeat_value,
            day_of(at),
            self._cuts_digest,
        ]
        if new.get("rfm_key") == rfm_key and (cuts is None or "r" in new):
            return False
        new["rfm_key"] = rfm_key
        history = purchase_history(state, at)
        assert history is not None
        x, t_x, age, m = history
        if cuts is not None:
            new["r"], new["f"], new["m"] = cuts.scores(age - t_x, x, m)
        if self.clv_eager:
            self.update_clv(state, at, new)
        return True

    def update_clv(self, state: CustomerState, at: float, scores: dict[str, Any]) -> None:
        """Put the CLV values at ``at`` into ``scores`` (all three or none; a failure raises)."""
        if self._bg is None:  # no model: no CLV
            return
        history = purchase_history(state, at)
        if history is None:
            return
        x, t_x, age, m = history
        clv_key = [x, t_x, age, round(m, 6)]
        if scores.get("clv_key") == clv_key:
            return
        eo90 = round(expected_purchases(self._bg, 90, x, t_x, age), 6)
        alive = round(p_alive(self._bg, x, t_x, age), 6)
        value = round(clv(self._bg, self._gg, x, t_x, age, m), 2) if self._gg is not None else 0.0
        scores.update(clv_key=clv_key, eo90=eo90, p_alive=alive, clv=value)

    def _weights(self, profile: str) -> dict[str, int]:
        for profile_id, _, profile_weights in self._profiles:
            if profile_id == profile:
                return profile_weights
        return self._default_weights

    def _shares(
        self, points: list[Any], profile: str
    ) -> tuple[float, list[tuple[int, int, bool, float, float]]] | None:
        """(exact score, [(factor index, points, missing, scaled weight, share)]), the weight
        and share rounded to 2 places as shown; None without data.

        Memoised: they depend only on the entries and the profile, which take few values,
        and rounding a float to places costs a decimal conversion each time.
        """
        key = (profile, *(tuple(e) if isinstance(e, list) else e for e in points))
        memo = self._shares_memo
        found = memo.get(key, MISS)
        if found is MISS:
            found = self._compute_shares(points, profile)
            remember(memo, key, found, self._memo_size)
        return found

    def _compute_shares(
        self, points: list[Any], profile: str
    ) -> tuple[float, list[tuple[int, int, bool, float, float]]] | None:
        weights = self._weights(profile)
        parts = [
            (i, entry, weights.get(compiled[0].spec.id, 0))
            for i, (compiled, entry) in enumerate(zip(self._factors, points, strict=False))
            if entry is not None
        ]
        total_weight = sum(w for *_, w in parts)
        if total_weight <= 0:
            return None
        scale = 100.0 / total_weight
        total = 0.0
        shares = []
        for i, entry, weight in parts:
            missing = isinstance(entry, list)
            got = entry[0] if missing else entry
            share = weight * scale * got / 100.0
            total += share
            shares.append((i, got, missing, round(weight * scale, 2), round(share, 2)))
        return total, shares

    def _health(self, points: list[Any], profile: str) -> int:
        """The health score from the factor points and the profile's weights."""
        found = self._shares(points, profile)
        if found is None:
            return self.scoring.spec.health.no_data_score
        return math.floor(found[0] + 0.5)

    def _stored_points(self, scores: dict[str, Any]) -> list[Any]:
        """The stored factor entries in definition order, also from the earlier layout."""
        stored = scores.get("fp")
        if isinstance(stored, dict):  # before SCORES_LAYOUT 2: {id: [value, points] | None}
            return [_entry_of(stored.get(f.spec.id)) for f, *_ in self._factors]
        if not isinstance(stored, list) or scores.get("def") != self._digest:
            return []  # computed under other definitions: not known until the next step
        return stored

    def shares(
        self, scores: dict[str, Any], value: Values | Callable[[str], Any]
    ) -> list[FactorShare]:
        """Every factor with data: its value, points, scaled weight and contribution.

        ``value(name)`` gives the features at the time of the scores: a factor's value is
        worked out, not stored (None when missing or when it cannot be computed).
        """
        found = self._shares(self._stored_points(scores), scores.get("profile", ""))
        if found is None:
            return []
        values = values_of(value)
        shown = []
        for i, got, missing, weight, share in found[1]:
            compiled, value_of = self._factors[i][0], self._factors[i][1]
            raw: float | None = None
            if not missing:
                try:
                    raw = self._shown_value(self._value(compiled, value_of, values))
                except _CEL_ERRORS:
                    raw = None
            shown.append(FactorShare(compiled.spec.id, raw, got, missing, weight, share))
        return shown

    def _shown_value(self, raw: float) -> float | None:
        """A factor's value as shown: rounded to 4 places (memoised: a decimal conversion
        each time otherwise), None when not a finite number."""
        if math.isnan(raw) or math.isinf(raw):
            return None
        if not raw:  # 0.0 and -0.0 are one key, and each shows as it is
            return raw
        memo = self._rounded
        shown = memo.get(raw)
        if shown is None:
            shown = round(raw, 4)
            remember(memo, raw, shown, self._memo_size)
        return shown

    def contributions(
        self, scores: dict[str, Any], value: Values | Callable[[str], Any]
    ) -> dict[str, list[Any]]:
        """Per factor with data: [value, points, weight, contribution] (see :meth:`shares`)."""
        return {
            f.factor: [f.value, f.points, f.weight, f.contribution]
            for f in self.shares(scores, value)
        }

    def _trend(self, new: dict[str, Any], health: int, at: float) -> None:
        """Record today's health and the change since ``trend_days`` ago."""
        today = day_of(at)
        flat: list[int] = new.get("hd", [])
        if new.get("hd_day") == today and flat and flat[-1] == health:
            return  # already recorded today with this score
        # [day, health, …] where the score changed, oldest first; a day's last score counts
        end = len(flat)
        while end and flat[end - 2] >= today:
            end -= 2
        if not end or flat[end - 1] != health:
            flat = [*flat[:end], today, health]
        elif end < len(flat):
            flat = flat[:end]
        cutoff = today - self.scoring.spec.health.trend_days
        reference = next((i for i in range(len(flat) - 2, -1, -2) if flat[i] <= cutoff), None)
        new["trend"] = 0 if reference is None else health - flat[reference + 1]
        new["hd"] = flat[reference:] if reference else flat
        new["hd_day"] = today


SCORES_LAYOUT: Final = "2"
"""How the bookkeeping in ``state.scores`` is laid out (part of the definitions' digest).

2: ``fp`` is a list in factor order of points (data), [points] (missing, scored by the
policy) or None (excluded); factor values are not stored but computed when shown. ``hd``
is [day, health, …] at the days the health changed; ``snap`` is the last snapshot's
[time, health, tier, stage, r, f, m, at risk, open alerts].
"""


def _from_layout_1(scores: dict[str, Any]) -> None:
    """Bring the health history and last snapshot of the layout before SCORES_LAYOUT 2 to
    it, in place (the full step that follows recomputes the factor points)."""
    history = scores.get("hd")
    if history and isinstance(history[0], list):  # [[day, health], …]
        scores["hd"] = [x for pair in history for x in pair]
    scores.pop("hd_last", None)
    snap = scores.get("snap")
    if isinstance(snap, dict):  # {"at", "health", "mark": {tier, stage, rfm, risk, alerts}}
        mark = snap["mark"]
        scores["snap"] = [
            snap["at"],
            snap["health"],
            mark.get("tier"),
            mark.get("stage"),
            *mark.get("rfm", [0, 0, 0]),
            mark.get("risk"),
            mark.get("alerts"),
        ]


def _entry_of(legacy: list[Any] | None) -> int | list[int] | None:
    """A factor entry of SCORES_LAYOUT 2 from one of the layout before ([value, points])."""
    if legacy is None:
        return None
    return [legacy[1]] if legacy[0] is None else legacy[1]


_KEY_OF: Final = {feature: key for key, feature in SCORE_KEYS.items()}
_RFM_KEYS: Final = ("r", "f", "m", "eo90", "p_alive", "clv")
CLV_FEATURES: Final = frozenset({"expected_orders_90d", "p_alive", "clv_12m"})


class _ScoreReader(Values):
    """Feature values for one scoring step: a score already computed in this step from the
    new scores, any other feature from ``others``."""

    def __init__(
        self,
        state: CustomerState,
        at: float,
        new: dict[str, Any],
        others: Values,
    ) -> None:
        self.state = state
        self.at = at
        self.new = new
        self.others = others

    def value(self, name: str) -> Any:
        """The value of feature ``name``."""
        key = _KEY_OF.get(name)
        if key is None:
            return self.others.value(name)
        found = self.new.get(key, MISS) if key != "tier_since" else MISS
        return FEATURES[name].compute(self.state, self.at) if found is MISS else found


def _chosen(
    outcome: ScoreOutcome,
    part: str,
    choices: list[tuple[str, Memo | None]],
    read: Values,
    default: str,
    otherwise: str | None = None,
) -> str:
    """The first choice whose condition holds (none: always), else ``otherwise`` (None: the
    last choice); ``default`` when a condition fails, the error noted under ``part``."""
    try:
        for choice_id, memo in choices:
            if memo is None or memo.run(read) is True:
                return choice_id
    except _CEL_ERRORS as exc:
        outcome.errors.append((part, str(exc)))
        return default
    return choices[-1][0] if otherwise is None else otherwise
