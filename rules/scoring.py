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
from typing import Any

import cel

from rules.memo import Memo
from rules.scoring_model import Factor, Scoring
from streams.clv import ClvModel, clv, expected_purchases, p_alive
from streams.features import FEATURES, purchase_history
from streams.sketch import CutPoints, score
from streams.state import CustomerState, day_of

TIER_FEATURES = frozenset({"tier", "previous_tier", "tier_downgraded", "days_since_tier_change"})
HEALTH_FEATURES = frozenset({"health_score", "health_trend_7d"})
STAGE_FEATURES = frozenset({"lifecycle_stage"})
NOT_READABLE = {
    "lifecycle": TIER_FEATURES | HEALTH_FEATURES | STAGE_FEATURES,
    "health": TIER_FEATURES | HEALTH_FEATURES,
    "tiers": TIER_FEATURES,
    "at_risk": frozenset[str](),
}
"""Per section: the scores it may not read, because they are computed after it."""

SCORE_KEYS = {
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


@dataclass
class ScoreOutcome:
    """What one scoring step changed."""

    changed: set[str] = field(default_factory=set)  # features whose value changed
    tier_change: tuple[str, str] | None = None  # (from, to)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (part, message)


def points_for(factor: Factor, value: float) -> int:
    """Points of ``value`` on the factor's grid."""
    for step in factor.grid:
        if step.below is None or value < step.below:
            return step.points
    return factor.grid[-1].points


_CEL_ERRORS = (RuntimeError, TypeError, ValueError, KeyError, ArithmeticError)


def _names(*programs: cel.Program | None) -> frozenset[str]:
    return frozenset().union(*(set(p.variables()) for p in programs if p is not None))


class Scorer:
    """Runs the scoring step for one customer at a time; holds no customer state.

    A step recomputes only the parts (stage, profile, each factor, tier) whose inputs may
    have changed; the others keep their stored results, so the outcome is the same as
    recomputing everything.
    """

    def __init__(
        self,
        scoring: CompiledScoring,
        memo_size: int = 4096,
        model: ClvModel | None = None,
        cuts: CutPoints | None = None,
    ) -> None:
        self.scoring = scoring
        self.model = model
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
        self._profiles = [(i, Memo(p, memo_size), w) for i, p, w in scoring.profiles]
        self._stage_inputs = _names(*(p for _, p in scoring.stages))
        self._tier_inputs = _names(*(p for _, p in scoring.tiers))
        self._profile_inputs = _names(*(p for _, p, _ in scoring.profiles))
        self._inputs = (
            self._stage_inputs
            | self._tier_inputs
            | self._profile_inputs
            | frozenset().union(*(inputs for *_, inputs in self._factors))
        )
        self._default_weights = {f.spec.id: f.spec.weight for f in scoring.factors}
        self._rank = scoring.rank
        self._at_risk = Memo(scoring.at_risk, memo_size)
        self._bg = model.bg() if model else None
        self._gg = model.gg() if model else None
        # stored parts computed under other definitions are recomputed in full
        self._digest = hashlib.blake2b(
            scoring.spec.model_dump_json().encode(), digest_size=6
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

    def at_risk(self, value: Callable[[str], Any]) -> bool:
        """The at-risk flag for the customer's current features (False if it fails)."""
        try:
            return self._at_risk.run(value) is True
        except _CEL_ERRORS:
            return False

    def step(
        self,
        state: CustomerState,
        at: float,
        value: Callable[[str], Any],
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
        outcome = ScoreOutcome()
        try:
            self._rfm(state, at, new)
        except (ValueError, ArithmeticError) as exc:  # a model that does not fit this customer
            outcome.errors.append(("clv", str(exc)))
        override = state.account.get("tier_override")
        full = (
            changed is None
            or "fp" not in old
            or old.get("ovr") != override
            or old.get("def") != self._digest
        )
        new["def"] = self._digest
        moved = set(changed or ())
        moved.update(SCORE_KEYS[k] for k in _RFM_KEYS if new.get(k) != old.get(k))
        if not full and moved.isdisjoint(self._inputs):
            # nothing a part reads has changed: only today's health sample may be new
            self._trend(new, new["health"], at)
            trend_moved = new["trend"] != old.get("trend")
            if not (trend_moved and "health_trend_7d" in self._tier_inputs):
                if trend_moved:
                    outcome.changed.add("health_trend_7d")
                outcome.changed.update(SCORE_KEYS[k] for k in _RFM_KEYS if new.get(k) != old.get(k))
                state.scores = new
                return outcome
            moved.add("health_trend_7d")  # a tier reads the trend: on to the tier

        def read(name: str) -> Any:
            key = _KEY_OF.get(name)
            if key is None:
                return value(name)
            if key == "tier_since":
                return FEATURES[name].compute(state, at)
            return new.get(key, FEATURES[name].compute(state, at))

        def part(name: str, compute: Callable[[], Any], default: Any) -> Any:
            try:
                return compute()
            except _CEL_ERRORS as exc:
                outcome.errors.append((name, str(exc)))
                return default

        if full or not moved.isdisjoint(self._stage_inputs):
            new["stage"] = part(
                "lifecycle", lambda: _first(self._stages, read), old.get("stage", "")
            )
            if new["stage"] != old.get("stage"):
                moved.add("lifecycle_stage")
        if full or not moved.isdisjoint(self._profile_inputs):
            new["profile"] = part("profile", lambda: self._profile(read), old.get("profile", ""))
        # a full step starts afresh: factors of earlier definitions must not linger
        points: dict[str, Any] = {} if full else dict(old.get("fp", {}))
        for factor, value_of, missing_of, inputs in self._factors:
            if full or not moved.isdisjoint(inputs):
                factor_id = factor.spec.id
                points[factor_id] = part(
                    f"health.{factor_id}",
                    lambda f=factor, v=value_of, m=missing_of: self._factor(f, v, m, read),  # type: ignore[misc]
                    points.get(factor_id),
                )
        new["fp"] = points
        self._health(new)
        self._trend(new, new["health"], at)
        for key in ("health", "trend"):
            if new[key] != old.get(key):
                moved.add(SCORE_KEYS[key])
        new["ovr"] = override
        before: str | None = old.get("tier")
        fallback = before if before is not None else self.scoring.tiers[-1][0]
        tier: str = fallback
        if override is not None and override in self._rank:
            tier = override
        elif full or not moved.isdisjoint(self._tier_inputs):
            tier = part("tiers", lambda: _first(self._tiers, read), fallback)
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

    def _profile(self, read: Callable[[str], Any]) -> str:
        for profile_id, applies, _ in self._profiles:
            if applies.run(read) is True:
                return profile_id
        return ""

    def _factor(
        self, compiled: CompiledFactor, value_of: Memo, missing_of: Memo | None, read: Any
    ) -> list[Any] | None:
        """[value, points] of a factor; [None, points] or None (excluded) without data."""
        factor = compiled.spec
        if missing_of is not None and missing_of.run(read) is True:
            policy = (
                factor.missing if factor.missing is not None else self.scoring.spec.health.missing
            )
            return None if policy == "exclude" else [None, int(policy)]
        raw = float(value_of.run(read))
        return [_json_number(raw), points_for(factor, raw)]

    def _rfm(self, state: CustomerState, at: float, new: dict[str, Any]) -> None:
        history = purchase_history(state, at)
        if history is None:
            for key in ("r", "f", "m", "eo90", "p_alive", "clv", "clv_key", "rfm_key"):
                new.pop(key, None)
            return
        x, t_x, age, m = history
        cuts = self.cuts
        rfm_key = [x, t_x, age, round(m, 6), self._cuts_digest]
        if new.get("rfm_key") == rfm_key and (cuts is None or "r" in new):
            return  # same history, same day, same cut points: same scores
        new["rfm_key"] = rfm_key
        if cuts is not None:
            new["r"] = score(age - t_x, cuts.recency, higher_is_better=False)
            new["f"] = score(x, cuts.frequency, higher_is_better=True)
            new["m"] = score(m, cuts.monetary, higher_is_better=True)
        if self._bg is not None:
            clv_key = [x, t_x, age, round(m, 6)]
            if new.get("clv_key") != clv_key:  # all three or none (a failure raises first)
                eo90 = round(expected_purchases(self._bg, 90, x, t_x, age), 6)
                alive = round(p_alive(self._bg, x, t_x, age), 6)
                value = (
                    round(clv(self._bg, self._gg, x, t_x, age, m), 2)
                    if self._gg is not None
                    else 0.0
                )
                new.update(clv_key=clv_key, eo90=eo90, p_alive=alive, clv=value)

    def _health(self, new: dict[str, Any]) -> None:
        """Score and contributions from the stored factor points and the profile's weights."""
        spec = self.scoring.spec.health
        profile = new.get("profile", "")
        weights = self._default_weights
        for profile_id, _, profile_weights in self._profiles:
            if profile_id == profile:
                weights = profile_weights
                break
        parts = [
            (factor_id, entry, weights.get(factor_id, 0))
            for factor_id, entry in new["fp"].items()
            if entry is not None
        ]
        total_weight = sum(w for *_, w in parts)
        contrib: dict[str, list[Any]] = {}
        if total_weight <= 0:
            health = spec.no_data_score
        else:
            scale = 100.0 / total_weight
            exact = 0.0
            for factor_id, (factor_value, factor_points), weight in parts:
                share = weight * scale * factor_points / 100.0
                exact += share
                contrib[factor_id] = [
                    factor_value,
                    factor_points,
                    round(weight * scale, 2),
                    round(share, 2),
                ]
            health = math.floor(exact + 0.5)
        new["health"] = health
        new["contrib"] = contrib

    def _trend(self, new: dict[str, Any], health: int, at: float) -> None:
        """Record today's health and the change since ``trend_days`` ago."""
        today = day_of(at)
        samples = new.get("hd", {})
        if samples.get(str(today)) == health and new.get("hd_day") == today:
            return  # already recorded today with this score
        trend_days = self.scoring.spec.health.trend_days
        days = {int(d): h for d, h in samples.items()}
        days[today] = health
        reference = max((d for d in days if d <= today - trend_days), default=None)
        new["trend"] = 0 if reference is None else health - days[reference]
        floor = reference if reference is not None else today - trend_days
        new["hd"] = {str(d): h for d, h in sorted(days.items()) if d >= floor}
        new["hd_day"] = today


_KEY_OF = {feature: key for key, feature in SCORE_KEYS.items()}
_RFM_KEYS = ("r", "f", "m", "eo90", "p_alive", "clv")


def _first(choices: list[tuple[str, Memo | None]], read: Callable[[str], Any]) -> str:
    for choice_id, memo in choices:
        if memo is None or memo.run(read) is True:
            return choice_id
    return choices[-1][0]


def _json_number(raw: float | None) -> float | None:
    if raw is None or math.isnan(raw) or math.isinf(raw):
        return None
    return round(raw, 4)
