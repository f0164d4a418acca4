"""The scoring step of an evaluation and the customer-health snapshots that follow the rules.

A scoring step runs first in every evaluation (rules read its results); a tier change is
announced at once on the alerts topic. After the rules, a snapshot of the customer's health
goes out when something material moved (tier, stage, RFM scores, at-risk flag, open alerts,
a large enough health move), at most once per interval unless the tier changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from rules.config import EngineConfig
from rules.evaluation import Evaluation
from rules.results import HealthSnapshot, Result, RuleError, built, digest, timestamp
from rules.scoring import Scorer
from rules.templates import shown
from schemas import AlertEvent
from streams.features import KINDS_CHANGING
from streams.state import CustomerState

TIER_CHANGED: Final = "tier_changed"
SNAPSHOT_FEATURES: Final = (
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
SNAPSHOT_MARKS: Final = frozenset(
    {"tier", "lifecycle_stage", "rfm_r_score", "rfm_f_score", "rfm_m_score", "health_score"}
)
"""The scores a snapshot check compares with the last snapshot (with at risk and alerts)."""
SCORE_FEATURES: Final = KINDS_CHANGING["scores"]
"""The features that show the scoring step's results."""
_SNAPSHOT_SORTED: Final = tuple(sorted(SNAPSHOT_FEATURES))
"""The snapshot's features in the order they are shown."""
_MARK_REASONS: Final = ("tier", "stage", "rfm", "rfm", "rfm", "risk", "alerts")
"""The snapshot reason of each mark (see ``Snapshots._send``)."""


class Scored:
    """What the scoring step of one evaluation found."""

    # a plain class: compiled, a dataclass's generated __init__ stays interpreted
    def __init__(
        self,
        changed: frozenset[str] | None,  # the evaluation's moved features, with the scores' own
        tier_change: tuple[str, str] | None,  # (from, to)
        full: bool,  # every part was recomputed
    ) -> None:
        self.changed = changed
        self.tier_change = tier_change
        self.full = full


class Snapshots:
    """Runs the scoring step and the snapshot check of an evaluation; holds no customer
    state."""

    def __init__(
        self, scorer: Scorer, config: EngineConfig, wall_clock: Callable[[], float]
    ) -> None:
        self.scorer = scorer
        self.config = config
        self._wall = wall_clock
        self.inputs = SNAPSHOT_MARKS | frozenset(scorer.scoring.at_risk.variables())
        """What the snapshot check reads; it is skipped while none of it changed."""

    def score(
        self,
        one: Evaluation,
        changed: frozenset[str] | None,
        score_changed: frozenset[str] | None,
        result: Result,
    ) -> Scored:
        """Recompute the customer's scores; announce a tier change, record failed parts.

        ``score_changed``: what scoring must consider changed (None: ``changed``).
        """
        outcome = self.scorer.step(
            one.state, one.at, one, changed if score_changed is None else score_changed
        )
        one.forget(SCORE_FEATURES)  # computed before the step: stale now
        if changed is not None:
            changed = changed | outcome.changed
        tier_change = outcome.tier_change
        if tier_change is not None:
            result.outputs.append(self._tier_notice(one, *tier_change))
        for where, message in outcome.errors:
            result.errors.append(RuleError(f"scoring.{where}", one.state.customer_id, message))
        return Scored(changed, tier_change, outcome.full)

    def check(self, one: Evaluation, scored: Scored, result: Result) -> None:
        """After the rules: send a snapshot if something material moved and it is time."""
        if not self._unchanged(one, scored.changed, scored.full):
            self._send(one, result, scored.tier_change)

    def _unchanged(self, one: Evaluation, changed: frozenset[str] | None, full_step: bool) -> bool:
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
            and changed.isdisjoint(self.inputs)
        )

    def _send(
        self,
        one: Evaluation,
        result: Result,
        tier_change: tuple[str, str] | None,
    ) -> None:
        """Emit a snapshot if something material changed and the interval allows it."""
        scores = one.state.scores
        open_alerts = sorted(
            rec["id"] for rec in one.state.alerts.values() if rec.get("s") == "firing"
        )
        at_risk = self.scorer.at_risk(one)
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
        one: Evaluation,
        open_alerts: list[str],
        at_risk: bool,
        reasons: list[str],
        tier_change: tuple[str, str] | None,
    ) -> HealthSnapshot:
        """The snapshot's document: ``schemas.CustomerHealth``'s fields in their order."""
        state, scores, scorer = one.state, one.state.scores, self.scorer
        model = self.config.clv_model
        cuts = scorer.cuts
        factors: dict[str, Any] = {}
        for share in scorer.shares(scores, one):
            factors[share.factor] = {
                "value": share.value,
                "points": share.points,
                "weight": float(share.weight),
                "contribution": float(share.contribution),
                "missing": share.missing,
            }
        since = scores.get("tier_since")
        clv = None
        if model is not None and "clv_key" in scores:
            clv = {
                "expected_orders_90d": float(scores["eo90"]),
                "p_alive": float(scores["p_alive"]),
                "clv_12m": float(scores["clv"]),
                "model": f"{model.fitted_at.isoformat()} {model.source}",
            }
        return HealthSnapshot(
            {
                "customer_id": state.customer_id,
                "name": state.account.get("name") if self.config.output_names else None,
                "event": TIER_CHANGED if tier_change else "snapshot",
                "reasons": ([TIER_CHANGED] if tier_change else [])
                + [r for r in reasons if r != "tier"],
                "tier": scores.get("tier"),
                "previous_tier": scores.get("prev_tier"),
                "tier_changed_at": None if since is None else timestamp(since),
                "at_risk": at_risk,
                "lifecycle_stage": scores.get("stage"),
                "health": {
                    "score": int(scores.get("health", 0)),
                    "trend_7d": int(scores.get("trend", 0)),
                    "profile": scores.get("profile", ""),
                    "factors": factors,
                },
                "rfm": {
                    "frequency": int(one.value("rfm_frequency")),
                    "recency_days": int(one.value("rfm_recency_days")),
                    "age_days": int(one.value("rfm_age_days")),
                    "monetary": float(round(one.value("rfm_monetary"), 2)),
                    "r_score": int(scores.get("r", 0)),
                    "f_score": int(scores.get("f", 0)),
                    "m_score": int(scores.get("m", 0)),
                    "cut_points": None if cuts is None else cuts.to_dict(),
                },
                "clv": clv,
                "features": {n: one.value(n) for n in _SNAPSHOT_SORTED},
                "open_alerts": open_alerts,
                "as_of": timestamp(one.at),
            }
        )

    def _name(self, state: CustomerState) -> str:
        """The account's name, or its id when there is none or names are off."""
        if not self.config.output_names:
            return state.customer_id
        return state.account.get("name", state.customer_id)

    def _tier_notice(self, one: Evaluation, before: str, after: str) -> AlertEvent:
        """The info event on the alerts topic announcing a tier change."""
        state = one.state
        direction = "downgraded" if state.scores.get("downgraded") else "upgraded"
        return built(
            AlertEvent,
            alert_id="al-" + digest(state.customer_id, TIER_CHANGED, f"{one.at:.3f}"),
            customer_id=state.customer_id,
            rule_id=TIER_CHANGED,
            severity="info",
            status="notice",
            summary=f"{shown(self._name(state))}: tier {direction} from {before} to {after}",
            description="",
            evidence={
                "from": before,
                "to": after,
                "health_score": state.scores.get("health"),
                "revenue_365d": one.value("revenue_365d"),
                "lifecycle_stage": state.scores.get("stage"),
            },
            labels={},
            tier=after,
            fired_at=timestamp(one.at),
            resolved_at=None,
            resolution=None,
            emitted_at=timestamp(self._wall()),
        )
