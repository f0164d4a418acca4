"""How good each rule is on history: precision, recall, lead time, alert load, ROC/AUC.

Pure functions over a backtest's episodes (rules/backtest.py) and churn labels.

Definitions (docs/backtest.md):

* the *window* is ``[start, end)`` in event time; the *population* is every customer seen
  before ``end``, less those that churned before ``start``;
* a rule *alerted* a customer when one of its episodes overlaps the window (fired before
  ``end``, not resolved before ``start``); ``alerts`` counts the firings inside the window;
* a *hit* is an alerted customer that churned, first alerted (in the window) no later than
  its churn time; ``precision = hits / alerted``, ``recall = hits / churned``;
* *lead time*: days from that first alert to the churn time, over the hits (median, p90);
* *alert load*: firings per 1,000 customers of the population per month (30.44 days).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rules.backtest import Episode

DAY = 86400.0
MONTH_DAYS = 365.25 / 12


@dataclass(frozen=True)
class Window:
    """The evaluation window ``[start, end)``, epoch seconds of event time."""

    start: float
    end: float

    @property
    def months(self) -> float:
        """Its length in months of 30.44 days."""
        return (self.end - self.start) / DAY / MONTH_DAYS


def population(
    first_seen: Mapping[str, float], churned_at: Mapping[str, float], window: Window
) -> set[str]:
    """Customers seen before the window ends, less those that churned before it began."""
    return {
        cid
        for cid, seen in first_seen.items()
        if seen < window.end and churned_at.get(cid, math.inf) >= window.start
    }


def quantile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0-1) with linear interpolation between order statistics."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def rule_metrics(
    episodes: Iterable[Episode],
    people: set[str],
    churned_at: Mapping[str, float],
    window: Window,
) -> dict[str, Any]:
    """The metrics of one rule's episodes (see the module docstring)."""
    first: dict[str, float] = {}
    alerts = 0
    for ep in episodes:
        if ep.customer_id not in people:
            continue
        if window.start <= ep.fired_at < window.end:
            alerts += 1
        overlaps = ep.fired_at < window.end and (
            ep.resolved_at is None or ep.resolved_at >= window.start
        )
        if overlaps:
            at = max(ep.fired_at, window.start)
            if at < first.get(ep.customer_id, math.inf):
                first[ep.customer_id] = at
    churned = {c for c in people if c in churned_at}
    leads = [
        (churned_at[cid] - at) / DAY
        for cid, at in first.items()
        if cid in churned and at <= churned_at[cid]
    ]
    hits = len(leads)
    precision = hits / len(first) if first else None
    recall = hits / len(churned) if churned else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall > 0
        else None
    )
    load = alerts / (len(people) / 1000.0) / window.months if people and window.months > 0 else None
    base = len(churned) / len(people) if people else None
    lift = precision / base if precision is not None and base else None
    return {
        "alerts": alerts,
        "customers_alerted": len(first),
        "hits": hits,
        "precision": _round(precision),
        "lift": _round(lift, 3),
        "recall": _round(recall),
        "f1": _round(f1),
        "lead_time_days_median": _round(quantile(leads, 0.5), 2),
        "lead_time_days_p90": _round(quantile(leads, 0.9), 2),
        "alert_load": _round(load, 2),
    }


def all_rule_metrics(
    rule_ids: Iterable[str],
    episodes: Iterable[Episode],
    people: set[str],
    churned_at: Mapping[str, float],
    window: Window,
) -> dict[str, dict[str, Any]]:
    """:func:`rule_metrics` for every rule id (rules that never fired too), in that order."""
    by_rule: dict[str, list[Episode]] = {r: [] for r in rule_ids}
    for ep in episodes:
        by_rule.setdefault(ep.rule_id, []).append(ep)
    return {r: rule_metrics(eps, people, churned_at, window) for r, eps in by_rule.items()}


def roc(
    risk: Mapping[str, float], people: set[str], churned_at: Mapping[str, float]
) -> dict[str, Any]:
    """ROC curve and AUC of a risk score (higher = more likely to churn) over ``people``.

    Customers without a score count with risk 0. The curve has one point per distinct risk
    (alert when risk >= threshold), from the strictest threshold down; the AUC is the
    Mann-Whitney probability that a churned customer outranks a retained one (ties: half).
    """
    pos = sorted(risk.get(c, 0.0) for c in people if c in churned_at)
    neg = sorted(risk.get(c, 0.0) for c in people if c not in churned_at)
    points: list[dict[str, float]] = [{"threshold": math.inf, "fpr": 0.0, "tpr": 0.0}]
    if not pos or not neg:
        return {"auc": None, "points": [], "positives": len(pos), "negatives": len(neg)}
    thresholds = sorted({*pos, *neg}, reverse=True)
    # counts of scores >= t by binary search over the sorted lists
    for t in thresholds:
        tp = len(pos) - bisect.bisect_left(pos, t)
        fp = len(neg) - bisect.bisect_left(neg, t)
        points.append(
            {"threshold": t, "fpr": round(fp / len(neg), 6), "tpr": round(tp / len(pos), 6)}
        )
    wins = 0.0
    for p in pos:
        below = bisect.bisect_left(neg, p)
        ties = bisect.bisect_right(neg, p) - below
        wins += below + ties / 2
    auc = wins / (len(pos) * len(neg))
    points[0]["threshold"] = thresholds[0] + 1
    return {
        "auc": round(auc, 6),
        "points": points,
        "positives": len(pos),
        "negatives": len(neg),
    }
