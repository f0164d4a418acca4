"""Backtest metrics on hand-made episodes: precision, recall, lead time, load, ROC/AUC."""

from __future__ import annotations

import pytest

from agents.backtest_cli import UsageError, derive_horizon, parse_sweep
from rules.backtest import Episode, rules_needed
from rules.backtest_metrics import Window, population, quantile, roc, rule_metrics
from rules.loader import load_rules
from streams.settings import BUILTIN_PACKS

DAY = 86400.0
WINDOW = Window(0.0, 61 * DAY)  # about two months


def ep(customer: str, fired_day: float, resolved_day: float | None = None) -> Episode:
    resolved = None if resolved_day is None else resolved_day * DAY
    return Episode("r", customer, f"al-{customer}-{fired_day}", fired_day * DAY, resolved)


def test_precision_recall_lead_time_and_load() -> None:
    first_seen = {c: 0.0 for c in ("a", "b", "c", "d", "e")}
    churned = {"a": 61 * DAY, "b": 61 * DAY, "c": 30 * DAY}
    people = population(first_seen, churned, WINDOW)
    episodes = [
        ep("a", 1),  # hit, 60 days ahead
        ep("a", 40),  # a second firing: counted in alerts, not in customers
        ep("b", 51),  # hit, 10 days ahead
        ep("c", 45),  # alerted after it churned: not a hit
        ep("d", 5, 7),  # false alarm
        ep("e", -10, -2),  # resolved before the window: not alerted
        ep("x", 3),  # not in the population
    ]
    m = rule_metrics(episodes, people, churned, WINDOW)
    assert m["alerts"] == 5
    assert m["customers_alerted"] == 4
    assert m["hits"] == 2
    assert m["precision"] == 0.5
    assert m["lift"] == pytest.approx(0.5 / (3 / 5), abs=1e-3)
    assert m["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3), abs=1e-4)
    assert m["lead_time_days_median"] == 35.0
    assert m["lead_time_days_p90"] == 55.0
    months = 61 / (365.25 / 12)
    assert m["alert_load"] == pytest.approx(5 / (5 / 1000) / months, abs=0.01)


def test_population_drops_customers_churned_before_the_window() -> None:
    window = Window(10 * DAY, 20 * DAY)
    seen = {"a": 0.0, "b": 0.0, "late": 25 * DAY}
    assert population(seen, {"a": 5 * DAY}, window) == {"b"}


def test_episode_firing_before_the_window_still_alerts_in_it() -> None:
    window = Window(10 * DAY, 20 * DAY)
    m = rule_metrics([ep("a", 2)], {"a"}, {"a": 20 * DAY}, window)
    assert (m["alerts"], m["customers_alerted"], m["lead_time_days_median"]) == (0, 1, 10.0)


def test_quantile_interpolates() -> None:
    assert quantile([], 0.5) is None
    assert quantile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.5
    assert quantile([1.0, 2.0], 0.9) == pytest.approx(1.9)


def test_roc_and_auc_with_ties() -> None:
    people = {"p1", "p2", "n1", "n2"}
    churned = {"p1": 0.0, "p2": 0.0}
    perfect = roc({"p1": 9, "p2": 8, "n1": 1, "n2": 0}, people, churned)
    assert perfect["auc"] == 1.0
    assert perfect["points"][-1] == {"threshold": 0, "fpr": 1.0, "tpr": 1.0}
    tied = roc({"p1": 5, "p2": 5, "n1": 5, "n2": 5}, people, churned)
    assert tied["auc"] == 0.5
    assert roc({}, {"a"}, {})["auc"] is None


def test_sweep_and_label_specs() -> None:
    assert parse_sweep("order-rhythm-broken.min_days=14..60 step 7") == (
        "order-rhythm-broken",
        "min_days",
        [14, 21, 28, 35, 42, 49, 56],
    )
    assert parse_sweep("r.f=1.5..2.5 step 0.5")[2] == [1.5, 2.0, 2.5]
    with pytest.raises(UsageError):
        parse_sweep("r=1..2")
    assert derive_horizon("no-order:10d", 0.0) == 10 * DAY
    assert derive_horizon("no-order:1970-01-02", 0.0) == 2 * DAY
    with pytest.raises(UsageError):
        derive_horizon("churned", 0.0)


def test_a_sweep_runs_the_rule_and_what_inhibits_it_or_everything() -> None:
    rules = load_rules([BUILTIN_PACKS])
    assert rules_needed(rules, "customer-dormant") == {"customer-dormant"}
    assert rules_needed(rules, "order-rhythm-broken") == {"order-rhythm-broken", "customer-dormant"}
    assert rules_needed(rules, "activity-decline") == {
        "activity-decline",
        "inactivity",
        "customer-dormant",
    }
    assert rules_needed(rules, "renewal-at-risk") is None  # reads other alerts
