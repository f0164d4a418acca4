"""Scoring definitions (loader checks with file and line) and the scoring step (pure)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from rules.engine import Engine, EngineConfig
from rules.loader import DEFAULT_SCORING, RulePackError, RuleSet, load_rules
from rules.scoring import Scorer
from schemas import CustomerHealth
from streams.features import FEATURES
from streams.sketch import CutPoints
from streams.state import CustomerState, day_of
from tests.factories import CID, T0, account, clv_model, contact, login, order, ticket

BASE = DEFAULT_SCORING.read_text(encoding="utf-8")
RULE = """\
rules:
  - id: quiet
    when: open_tickets > 0
    severity: low
    summary: "x"
"""


def scoring_file(tmp_path: Path, text: str, name: str = "scoring.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(*paths: Path) -> list[str]:
    with pytest.raises(RulePackError) as info:
        load_rules(list(paths))
    return [str(p) for p in info.value.problems]


def line_of(text: str, needle: str) -> int:
    return text.splitlines().index(next(x for x in text.splitlines() if needle in x)) + 1


# -- the built-in definitions ------------------------------------------------------------------
def test_builtin_scoring_loads_with_its_thresholds() -> None:
    ruleset = load_rules([DEFAULT_SCORING.parent])
    scoring = ruleset.scoring
    assert scoring is not None and scoring.source == str(DEFAULT_SCORING)
    assert [t for t, _ in scoring.tiers] == ["strategic", "key", "growth", "normal"]
    assert [s for s, _ in scoring.stages] == ["churned", "new", "declining", "growing", "mature"]
    assert scoring.thresholds["tenure_days"] == frozenset({90, 1095})
    assert scoring.rank["strategic"] < scoring.rank["normal"]


def test_a_rules_only_pack_gets_the_builtin_scoring(tmp_path: Path) -> None:
    pack = scoring_file(tmp_path, RULE, "rules.yaml")
    assert load_rules([pack]).scoring is not None
    assert load_rules([pack], default_scoring=False).scoring is None


# -- every problem with file and line --------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        (
            "  - id: key\n",
            "  - id: key\n    colour: red\n",
            "colour: red",
            "tiers.1.colour: Extra inputs are not permitted",
        ),
        (
            'when: "revenue_365d >= 1000000.0"',
            'when: "revenue_365d >= "',
            'revenue_365d >= "',
            "tiers.1.when: CEL syntax error",
        ),
        (
            'when: "revenue_365d >= 1000000.0"',
            'when: "revenue_365d"',
            'when: "revenue_365d"',
            "tiers.1.when: must be a boolean expression",
        ),
        (
            'when: "tenure_days < 90"',
            'when: "health_score < 90"',
            "health_score < 90",
            "lifecycle.1.when: cannot read health_score (computed after lifecycle)",
        ),
        (
            'when: "revenue_365d >= 1000000.0"',
            "when: \"tier == 'key'\"",
            "tier == 'key'",
            "tiers.1.when: cannot read tier (computed after tiers)",
        ),
        (
            "value: complaints_7d",
            "value: complaints_7d > 1",
            "complaints_7d > 1",
            "health.factors.1.value: must be a number",
        ),
        (
            "value: complaints_7d",
            "value: complaints_per_day",
            "complaints_per_day",
            "health.factors.1.value: unknown variable(s) complaints_per_day",
        ),
        (
            "      weight: 20\n",
            "      weight: 25\n",
            "  factors:",
            "health.factors: weights sum to 105, not 100",
        ),
        (
            "        critical_tickets: 10\n",
            "        critical_ticket: 10\n",
            "      weights:",
            "unknown factor(s) critical_ticket",
        ),
        (
            "  - id: normal\n",
            '  - id: normal\n    when: "true"\n',
            'when: "true"',
            "the last entry (normal) is the fallback and takes no `when`",
        ),
        (
            "        - {below: 2.0, points: 70}\n",
            "        - {below: 1.0, points: 70}\n",
            "id: order_rhythm",
            "grid: `below` values must rise from step to step",
        ),
        (
            "        - {points: 0}\n",
            "        - {below: 9, points: 0}\n",
            "id: complaints",
            "grid: the last step takes no `below`",
        ),
    ],
)
def test_scoring_problems_name_file_line_and_reason(
    tmp_path: Path, old: str, new: str, needle: str, message: str
) -> None:
    assert old in BASE
    text = BASE.replace(old, new, 1)
    path = scoring_file(tmp_path, text)
    found = problems_of(path)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}:{line_of(text, needle)}: "), (found, line_of(text, needle))
    assert message in found[0]


def test_scoring_defined_twice_is_refused(tmp_path: Path) -> None:
    first = scoring_file(tmp_path, BASE, "a.yaml")
    second = scoring_file(tmp_path, BASE, "b.yaml")
    [problem] = problems_of(first, second)
    assert problem.startswith(f"{second}:")
    assert f"scoring is already defined in {first}" in problem


def test_rules_check_reports_a_broken_scoring_file(tmp_path: Path) -> None:
    text = BASE.replace("      weight: 30\n", "      weight: 35\n", 1)
    path = scoring_file(tmp_path, text)
    done = subprocess.run(
        [sys.executable, "-m", "agents", "rules", "check", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ},
        check=False,
    )
    assert done.returncode == 1
    assert f"{path}:{line_of(text, '  factors:')}: health.factors: weights sum to 105" in (
        done.stderr
    )


# -- the scoring step ----------------------------------------------------------------------------
def scored_engine(tmp_path: Path, text: str = BASE, **config: Any) -> Engine:
    path = scoring_file(tmp_path, text)
    rules = scoring_file(tmp_path, RULE, "rules.yaml")
    return Engine(load_rules([rules, path]), EngineConfig(**config), wall_clock=lambda: 0.0)


def feed(engine: Engine, state: CustomerState, events: list[Any]) -> list[Any]:
    out: list[Any] = []
    for e in events:
        result = engine.apply(state, e)
        out += result.outputs + [s.model() for s in result.snapshots]
    return out


def contributions(engine: Engine, state: CustomerState) -> dict[str, list[Any]]:
    """The health factors' contributions as of the customer's last evaluation."""
    assert engine.scorer is not None and state.evaluated_at is not None
    at = state.evaluated_at
    return engine.scorer.contributions(state.scores, lambda n: FEATURES[n].compute(state, at))


def test_health_adds_weighted_points_and_leaves_out_factors_without_data(tmp_path: Path) -> None:
    engine = scored_engine(tmp_path, snapshot_interval=0.0)
    state = CustomerState(CID)
    feed(engine, state, [account(T0), login(T0), ticket(T0, "t1")])
    scores = state.scores
    assert engine.scorer is not None
    contrib = contributions(engine, state)
    # new customer: profile new-customer; order_rhythm and satisfaction have no data
    assert scores["profile"] == "new-customer"
    assert set(contrib) == {"login_activity", "complaints", "key_contacts", "critical_tickets"}
    assert contrib["complaints"] == [1.0, 60, 25.0, 15.0]  # value, points, weight, share
    assert scores["health"] == round(sum(c[3] for c in contrib.values()))
    assert FEATURES["health_score"].compute(state, T0.timestamp()) == scores["health"]


def test_missing_points_policy_and_trend(tmp_path: Path) -> None:
    text = BASE.replace("  missing: exclude\n", "  missing: 50\n", 1)
    engine = scored_engine(tmp_path, text)
    state = CustomerState(CID)
    feed(engine, state, [account(T0), login(T0)])
    assert engine.scorer is not None
    assert contributions(engine, state)["satisfaction"][:2] == [None, 50]
    first = state.scores["health"]
    feed(engine, state, [ticket(T0 + timedelta(days=8), "t1")])
    assert state.scores["trend"] == state.scores["health"] - first


def test_tier_override_wins_and_a_drop_is_a_downgrade(tmp_path: Path) -> None:
    engine = scored_engine(tmp_path)
    state = CustomerState(CID)
    out = feed(engine, state, [account(T0, tier_override="strategic"), login(T0)])
    assert state.scores["tier"] == "strategic"
    assert not [o for o in out if getattr(o, "rule_id", None) == "tier_changed"]  # first tier
    out = feed(engine, state, [account(T0 + timedelta(days=1), tier_override=None)])
    notices = [o for o in out if getattr(o, "rule_id", None) == "tier_changed"]
    assert [(n.status, n.evidence["from"], n.evidence["to"]) for n in notices] == [
        ("notice", "strategic", "normal")
    ]
    assert state.scores["downgraded"] is True and state.scores["prev_tier"] == "strategic"
    snaps = [o for o in out if getattr(o, "event", None) == "tier_changed"]
    assert snaps and snaps[0].previous_tier == "strategic"


def test_orders_cross_into_key_and_the_quintiles_score_rfm(tmp_path: Path) -> None:
    engine = scored_engine(tmp_path)
    engine.set_cut_points(
        CutPoints((5.0, 10.0, 20.0, 40.0), (0.0, 0.0, 1.0, 3.0), (0.0, 0.0, 50.0, 500.0), 10, 0.0)
    )
    state = CustomerState(CID)
    feed(
        engine,
        state,
        [account(T0)]
        + [order(T0 + timedelta(days=d), f"o{d}", "paid", "400000") for d in (0, 1, 2)],
    )
    assert state.scores["tier"] == "key"
    assert (state.scores["r"], state.scores["f"], state.scores["m"]) == (5, 4, 5)


def test_a_failing_factor_keeps_its_last_points_and_reports_an_error(tmp_path: Path) -> None:
    text = BASE.replace(
        "value: key_contacts_departed_30d", "value: 10 / key_contacts_departed_30d", 1
    )
    engine = scored_engine(tmp_path, text)
    state = CustomerState(CID)
    result = engine.apply(state, account(T0))
    assert any(e.rule_id == "scoring.health.key_contacts" for e in result.errors)
    assert engine.scorer is not None
    assert "key_contacts" not in contributions(engine, state)  # no points yet
    assert 0 <= state.scores["health"] <= 100


def test_snapshots_wait_for_the_interval_but_a_tier_change_goes_at_once(tmp_path: Path) -> None:
    engine = scored_engine(tmp_path, snapshot_interval=3600.0)
    state = CustomerState(CID)
    first = feed(engine, state, [account(T0, tier_override="key")])
    assert [s.reasons for s in first if hasattr(s, "reasons")] == [["first"]]
    later = T0 + timedelta(minutes=10)
    out = feed(engine, state, [ticket(later, "c1", severity="critical")])
    assert not [o for o in out if hasattr(o, "reasons")]  # material, but within the hour
    due = engine.next_deadline(state)
    assert due is not None and due <= (T0 + timedelta(hours=1)).timestamp()
    out = feed(engine, state, [account(T0 + timedelta(minutes=20), tier_override="normal")])
    assert [s.event for s in out if hasattr(s, "reasons")] == ["tier_changed"]


def test_scorer_without_cut_points_leaves_rfm_scores_unset(tmp_path: Path) -> None:
    engine = scored_engine(tmp_path)
    assert isinstance(engine.scorer, Scorer) and engine.scorer.cuts is None
    state = CustomerState(CID)
    feed(engine, state, [order(T0, "o1", "paid", "10")])
    assert "f" not in state.scores
    assert FEATURES["rfm_f_score"].compute(state, T0.timestamp()) == 0


# -- regressions found in review -----------------------------------------------------------------
def test_a_clv_model_that_does_not_fit_a_customer_is_an_error_not_a_crash(tmp_path: Path) -> None:
    # a rule reads clv_12m: CLV is computed in every scoring step
    text = BASE.replace('when: "revenue_365d >= 1000000.0"', 'when: "clv_12m >= 1000000.0"', 1)
    engine = scored_engine(tmp_path, text, clv_model=clv_model(1.0))
    assert engine.scorer is not None and engine.scorer.clv_eager
    state = CustomerState(CID)
    feed(engine, state, [order(T0, "o1", "paid", "10")])
    result = engine.apply(state, order(T0 + timedelta(days=3), "o2", "paid", "20"))
    assert any(e.rule_id == "scoring.clv" for e in result.errors)
    assert state.scores["health"] >= 0  # the rest of the step ran


def test_clv_nothing_reads_is_computed_for_snapshots_and_its_failure_is_an_error(
    tmp_path: Path,
) -> None:
    engine = scored_engine(tmp_path, clv_model=clv_model(1.0))
    assert engine.scorer is not None and not engine.scorer.clv_eager
    state = CustomerState(CID)
    feed(
        engine,
        state,
        [order(T0, "o1", "paid", "10"), order(T0 + timedelta(days=3), "o2", "paid", "20")],
    )
    assert "clv" not in state.scores  # not computed between snapshots
    result = engine.apply(state, account(T0 + timedelta(days=4), tier_override="key"))
    [snapshot] = [s.model() for s in result.snapshots]  # a tier change: a snapshot at once
    assert snapshot.clv is None
    assert [e.rule_id for e in result.errors] == ["scoring.clv"]

    fitting = scored_engine(tmp_path, clv_model=clv_model(3.6))
    state = CustomerState(CID)
    feed(
        fitting,
        state,
        [order(T0, "o1", "paid", "10"), order(T0 + timedelta(days=3), "o2", "paid", "20")],
    )
    keyed = fitting.apply(state, account(T0 + timedelta(days=4), tier_override="key"))
    [snapshot] = [s.model() for s in keyed.snapshots]
    assert snapshot.clv is not None and snapshot.clv.p_alive == state.scores["p_alive"]


@pytest.mark.parametrize("bound", [".nan", ".inf"])
def test_grid_bounds_must_be_finite(tmp_path: Path, bound: str) -> None:
    text = BASE.replace("{below: 2.0, points: 70}", f"{{below: {bound}, points: 70}}", 1)
    [problem] = problems_of(scoring_file(tmp_path, text))
    assert "below: Input should be a finite number" in problem


def test_scoring_may_not_read_alerts(tmp_path: Path) -> None:
    text = BASE.replace('when: "revenue_365d >= 1000000.0"', 'when: "open_high_alerts > 0"', 1)
    [problem] = problems_of(scoring_file(tmp_path, text))
    assert "cannot read open_high_alerts (alerts change after scoring" in problem


def test_new_definitions_recompute_every_part(tmp_path: Path) -> None:
    engine = scored_engine(tmp_path)
    state = CustomerState(CID)
    feed(engine, state, [account(T0), login(T0), ticket(T0, "t1")])
    assert contributions(engine, state)["complaints"][:2] == [1.0, 60]
    softer = BASE.replace(
        "        - {below: 2, points: 60}\n", "        - {below: 2, points: 10}\n"
    )
    (tmp_path / "v2").mkdir()
    engine2 = scored_engine(tmp_path / "v2", softer)
    feed(engine2, state, [login(T0 + timedelta(hours=1))])
    assert contributions(engine2, state)["complaints"][:2] == [1.0, 10]


def test_new_cut_points_rescore_even_with_the_same_as_of(tmp_path: Path) -> None:
    engine = scored_engine(tmp_path)
    state = CustomerState(CID)
    high = CutPoints((5.0, 10.0, 20.0, 40.0), (5.0, 6.0, 7.0, 8.0), (1e6, 2e6, 3e6, 4e6), 9, 1.0)
    low = CutPoints((5.0, 10.0, 20.0, 40.0), (0.0, 0.0, 0.0, 0.5), (1.0, 2.0, 3.0, 4.0), 9, 1.0)
    engine.set_cut_points(high)
    feed(engine, state, [order(T0, "o1", "paid"), order(T0 + timedelta(days=1), "o2", "paid")])
    assert state.scores["f"] == 1
    engine.set_cut_points(low)
    feed(engine, state, [login(T0 + timedelta(days=1, hours=1))])
    assert state.scores["f"] == 5


def test_a_cancelled_order_gives_its_purchase_day_back() -> None:
    from streams.state import StateConfig, apply_event

    state = CustomerState(CID)
    config = StateConfig()
    for event in (
        order(T0, "o1", "paid"),
        order(T0 + timedelta(days=5), "o2", "paid"),
        order(T0 + timedelta(days=10), "o3", "paid"),
        order(T0 + timedelta(days=10, hours=1), "o3", "cancelled"),
        order(T0 + timedelta(days=11), "o2", "cancelled"),
        order(T0 + timedelta(days=12), "o4", "paid", event_id="late", amount="40.00"),
    ):
        apply_event(state, event, config)
    at = (T0 + timedelta(days=12)).timestamp()
    assert FEATURES["rfm_frequency"].compute(state, at) == 1  # days 0 and 12 are left
    assert FEATURES["rfm_recency_days"].compute(state, at) == 12
    assert FEATURES["rfm_monetary"].compute(state, at) == 40.0


def test_a_state_from_before_purchase_history_is_seeded_from_what_it_remembers() -> None:
    import orjson

    from streams.state import StateConfig, apply_event

    state = CustomerState(CID)
    for d in (0, 30, 60):
        apply_event(state, order(T0 + timedelta(days=d), f"o{d}", "paid"), StateConfig())
    old = orjson.loads(state.to_bytes())
    del old["rfm"]
    seeded = CustomerState.from_bytes(orjson.dumps(old))
    assert (seeded.rfm_days, seeded.rfm_repeat_value) == (3, 200.0)


def test_factors_on_the_same_feature_all_wake_the_customer(tmp_path: Path) -> None:
    text = BASE.replace(
        "    - id: satisfaction\n",
        "    - id: overdue_strict\n      value: order_overdue_ratio\n      weight: 0\n"
        "      grid:\n        - {below: 1.2, points: 100}\n        - {points: 0}\n"
        "    - id: satisfaction\n",
        1,
    )
    engine = scored_engine(tmp_path, text)
    state = CustomerState(CID)
    feed(engine, state, [order(T0 + timedelta(days=d), f"o{d}", "paid") for d in (0, 10, 20)])
    due = engine.next_deadline(state)
    # gap 10 days: 1.2 x 10 = 12 days after the last order, before the 1.5 step (15 days)
    assert due is not None and due <= (T0 + timedelta(days=32)).timestamp()


# -- regressions found in the review of the cheaper step -------------------------------------
@pytest.mark.parametrize(
    ("at_risk", "summary"),
    [('"p_alive < 0.9"', '"x"'), ('"open_high_alerts > 0"', '"CLV {{ clv_12m }}"')],
)
def test_clv_read_by_at_risk_or_a_template_is_computed_in_every_step(
    tmp_path: Path, at_risk: str, summary: str
) -> None:
    text = BASE.replace('at_risk: "open_high_alerts > 0"', f"at_risk: {at_risk}", 1)
    rules = scoring_file(tmp_path, RULE.replace('summary: "x"', f"summary: {summary}"), "r.yaml")
    engine = Engine(
        load_rules([rules, scoring_file(tmp_path, text)]),
        EngineConfig(clv_model=clv_model()),
        wall_clock=lambda: 0.0,
    )
    assert engine.scorer is not None and engine.scorer.clv_eager
    state = CustomerState(CID)
    feed(
        engine,
        state,
        [order(T0, "o1", "paid", "10"), order(T0 + timedelta(days=3), "o2", "paid", "20")],
    )
    assert 0.0 < state.scores["p_alive"] < 1.0  # as of the last step, not of a snapshot


def test_at_risk_on_a_departure_clears_when_it_ages_out_without_other_wake_ups(
    tmp_path: Path,
) -> None:
    # review findings: the flag read a feature pruning changed unseen, and its time-changing
    # inputs woke nobody; it now flips exactly when the departure is 90 days old
    text = BASE.replace(
        'at_risk: "open_high_alerts > 0"', "at_risk: \"last_departed_contact != ''\"", 1
    )
    engine = scored_engine(tmp_path, text, snapshot_interval=0.0)
    state = CustomerState(CID)
    left = T0 + timedelta(hours=1)
    flagged = feed(engine, state, [account(T0), contact(left, "c1", "departed", name="Ada")])
    assert [s.at_risk for s in flagged if isinstance(s, CustomerHealth)][-1] is True
    swept = engine.advance(state, (T0 + timedelta(days=200)).timestamp())
    cleared = [s for s in (s.model() for s in swept.snapshots) if "risk" in s.reasons]
    assert [s.at_risk for s in cleared] == [False]
    assert cleared[0].as_of.timestamp() == pytest.approx(
        (left + timedelta(days=90)).timestamp(), abs=1e-3
    )


PLAIN = """\
tiers:
  - id: normal
lifecycle:
  - id: mature
health:
  factors:
"""
"""One tier, one stage: scoring definitions up to their health factors."""

CRITICAL_ONLY = (
    PLAIN
    + """\
    - id: crit
      value: open_critical_tickets
      weight: 100
      grid:
        - {below: 1, points: 100}
        - {below: 2, points: 40}
        - {points: 0}
"""
)


@pytest.mark.parametrize("seed", range(12))
def test_health_trend_is_the_change_since_the_last_score_a_week_or_more_ago(
    tmp_path: Path, seed: int
) -> None:
    # only the days the score changed are kept; the trend must be what keeping every
    # evaluated day gave: the score now minus the last one on or before the cutoff day
    rng = random.Random(seed)
    path = scoring_file(tmp_path, CRITICAL_ONLY)
    engine = Engine(load_rules([path]), EngineConfig(), wall_clock=lambda: 0.0)
    state = CustomerState(CID)
    history: list[tuple[int, int]] = []  # (day, score after every event), in time order
    t = T0
    for i in range(60):
        t += timedelta(seconds=rng.randint(0, 5 * 86400))
        status = rng.choice(["opened", "opened", "resolved"])
        event = ticket(t, f"t{rng.randint(0, 2)}", status, "question", "critical", event_id=f"e{i}")
        engine.apply(state, event)
        today = day_of(t.timestamp())
        health = state.scores["health"]
        history.append((today, health))
        before = [h for day, h in history if day <= today - 7]
        assert state.scores["trend"] == (health - before[-1] if before else 0), i
        kept = state.scores["hd"]
        assert all(kept[j + 1] != kept[j + 3] for j in range(0, len(kept) - 2, 2)), kept


def test_a_tier_that_reads_the_trend_changes_the_midnight_the_trend_moves(
    tmp_path: Path,
) -> None:
    falling = CRITICAL_ONLY.replace(
        "tiers:\n  - id: normal",
        'tiers:\n  - id: falling\n    when: "health_trend_7d <= -10"\n  - id: normal',
    )
    engine = Engine(load_rules([scoring_file(tmp_path, falling)]), EngineConfig(), lambda: 0.0)
    state = CustomerState(CID)
    feed(
        engine,
        state,
        [account(T0), ticket(T0 + timedelta(days=8), "t1", "opened", "question", "critical")],
    )
    assert (state.scores["tier"], state.scores["trend"]) == ("falling", -60)
    # the drop leaves the 7-day window at the midnight 7 days after its day: woken then
    drop_day = day_of((T0 + timedelta(days=8)).timestamp())
    assert engine.next_deadline(state) == (drop_day + 7) * 86400.0
    changed = engine.advance(state, (drop_day + 7) * 86400.0)
    assert [o.evidence["to"] for o in changed.outputs] == ["normal"]


def test_the_recency_score_wakes_a_customer_the_midnight_it_moves(tmp_path: Path) -> None:
    engine = Engine(
        load_rules([scoring_file(tmp_path, CRITICAL_ONLY)]), EngineConfig(), lambda: 0.0
    )
    engine.set_cut_points(CutPoints((2.0, 10.0, 30.0, 60.0), (1, 2, 3, 5), (1, 2, 3, 4), 100, 0.0))
    state = CustomerState(CID)
    feed(engine, state, [order(T0, "o-1", "paid", event_id="o-1")])
    assert state.scores["r"] == 5
    last = state.rfm_last_day
    assert last is not None
    # recency 3 days (above the cut at 2) scores 4: a snapshot that midnight, not later
    assert engine.next_deadline(state) == (last + 3) * 86400.0
    moved = engine.advance(state, (last + 3) * 86400.0)
    assert [(s.document["rfm"]["r_score"], s.document["reasons"]) for s in moved.snapshots] == [
        (4, ["rfm"])
    ]


def legacy_layout(scorer: Scorer, state: CustomerState, at: float) -> dict[str, Any]:
    """``state.scores`` as the layout before SCORES_LAYOUT 2 stored it."""
    scores = dict(state.scores)
    shown = scorer.contributions(scores, lambda n: FEATURES[n].compute(state, at))
    fp = scores["fp"]
    scores["fp"] = {
        f.spec.id: None
        if entry is None
        else [None, entry[0]]
        if isinstance(entry, list)
        else [shown[f.spec.id][0], entry]
        for f, entry in zip(scorer.scoring.factors, fp, strict=True)
    }
    flat = scores["hd"]
    scores["hd"] = [[flat[i], flat[i + 1]] for i in range(0, len(flat), 2)]
    scores["hd_last"] = flat[-1]
    snap = scores["snap"]
    scores["snap"] = {
        "at": snap[0],
        "health": snap[1],
        "mark": {
            "tier": snap[2],
            "stage": snap[3],
            "rfm": snap[4:7],
            "risk": snap[7],
            "alerts": snap[8],
        },
    }
    scores["def"] = "written-by-an-older-version"
    scores["ovr"] = None
    return scores


def test_scores_stored_in_the_earlier_layout_carry_on_where_they_were(tmp_path: Path) -> None:
    engine = scored_engine(tmp_path, snapshot_interval=0.0)
    assert engine.scorer is not None
    start = [account(T0), login(T0), login(T0 + timedelta(days=1), event_id="e1")]
    later = [
        ticket(T0 + timedelta(days=8), "t1", event_id="e2"),
        ticket(T0 + timedelta(days=9), "t2", event_id="e4"),
        login(T0 + timedelta(days=10), event_id="e3"),
    ]
    current, legacy = CustomerState(CID), CustomerState(CID)
    feed(engine, current, start)
    feed(engine, legacy, start)
    assert legacy.evaluated_at is not None
    legacy.scores = legacy_layout(engine.scorer, legacy, legacy.evaluated_at)
    legacy = CustomerState.from_bytes(legacy.to_bytes())
    assert contributions(engine, legacy) == contributions(engine, current)  # the web view's
    # the same outputs, with no extra "first" snapshot, and the trend as if never stored apart
    assert feed(engine, legacy, later) == feed(engine, current, later)
    assert legacy.scores["trend"] == current.scores["trend"] != 0
    assert legacy.scores == current.scores


def test_a_new_at_risk_definition_is_in_the_next_snapshot_even_if_nothing_else_moved(
    tmp_path: Path,
) -> None:
    engine = scored_engine(tmp_path, snapshot_interval=0.0)
    state = CustomerState(CID)
    first = feed(engine, state, [account(T0), login(T0)])
    assert {s.at_risk for s in first if isinstance(s, CustomerHealth)} == {False}
    (tmp_path / "v2").mkdir()
    flagged = BASE.replace('at_risk: "open_high_alerts > 0"', 'at_risk: "tenure_days >= 0"', 1)
    engine2 = scored_engine(tmp_path / "v2", flagged, snapshot_interval=0.0)
    later = feed(engine2, state, [login(T0 + timedelta(minutes=5), event_id="e2")])
    [snapshot] = [s for s in later if isinstance(s, CustomerHealth)]
    assert snapshot.at_risk is True and snapshot.reasons == ["risk"]


FAILS_AFTER_RESOLVING = """\
rules:
  - id: open-question
    # once no ticket is open, resolve_when clears it and then `when` divides by zero
    when: "complaints_7d / open_tickets >= 0"
    resolve_when: "open_tickets == 0"
    severity: high
    summary: "x"
"""


def test_an_alert_resolved_by_a_rule_that_then_fails_is_in_the_next_snapshot(
    tmp_path: Path,
) -> None:
    # review finding: the snapshot check is skipped when nothing it reads moved; an alert
    # that resolved in a rule step that then raised must still count as a change
    rules = scoring_file(tmp_path, FAILS_AFTER_RESOLVING, "rules.yaml")
    engine = Engine(
        load_rules([rules, scoring_file(tmp_path, BASE)]),
        EngineConfig(snapshot_interval=0.0),
        wall_clock=lambda: 0.0,
    )
    state = CustomerState(CID)
    question = T0 + timedelta(hours=1)
    opened = feed(engine, state, [account(T0), ticket(question, "q1", "opened", "question", "low")])
    assert [s.open_alerts for s in opened if isinstance(s, CustomerHealth)][-1] != []
    closed = ticket(question + timedelta(hours=1), "q1", "resolved", "question", "low", "e2")
    result = engine.apply(state, closed)
    assert [e.rule_id for e in result.errors] == ["open-question"]
    [snapshot] = [s.model() for s in result.snapshots]
    assert snapshot.open_alerts == [] and "alerts" in snapshot.reasons


def test_a_new_health_delta_applies_at_the_next_evaluation(tmp_path: Path) -> None:
    coarse = scored_engine(tmp_path, snapshot_interval=0.0, snapshot_health_delta=50)
    state = CustomerState(CID)
    feed(coarse, state, [account(T0), login(T0)])
    left = feed(coarse, state, [contact(T0 + timedelta(hours=1), "c1", "departed", name="Ada")])
    assert not [s for s in left if isinstance(s, CustomerHealth)]  # 6 points: under 50
    (tmp_path / "v2").mkdir()
    fine = scored_engine(tmp_path / "v2", snapshot_interval=0.0, snapshot_health_delta=5)
    later = feed(fine, state, [contact(T0 + timedelta(hours=2), "c9", "added", event_id="e3")])
    [snapshot] = [s for s in later if isinstance(s, CustomerHealth)]
    assert snapshot.reasons == ["health"]


def test_scores_catch_up_when_scoring_is_switched_back_on(tmp_path: Path) -> None:
    on = scored_engine(tmp_path)
    off = Engine(RuleSet(on.rules.rules, on.rules.fingerprint, scoring=None), EngineConfig())
    events = [account(T0), login(T0), ticket(T0 + timedelta(hours=1), "t1")]
    last = contact(T0 + timedelta(hours=2), "c9", "added", event_id="e3")
    always, toggled = CustomerState(CID), CustomerState(CID)
    feed(on, always, [*events, last])
    feed(on, toggled, events[:2])
    feed(off, toggled, events[2:])  # the complaint arrives while scoring is off
    feed(on, toggled, [last])
    assert toggled.scores["health"] == always.scores["health"] < 100


RATIO_FACTOR = (
    PLAIN
    + """\
    - id: ratio
      # fails (integer division by zero) when no ticket is open
      value: open_critical_tickets / open_tickets
      weight: 50
      grid:
        - {below: 1, points: 100}
        - {points: 0}
    - id: crit
      value: open_critical_tickets
      weight: 50
      grid:
        - {below: 1, points: 100}
        - {points: 0}
"""
)


def test_a_factor_that_fails_keeps_its_points_and_shows_no_value(tmp_path: Path) -> None:
    engine = Engine(
        load_rules([scoring_file(tmp_path, RATIO_FACTOR)]),
        EngineConfig(snapshot_interval=0.0),
        wall_clock=lambda: 0.0,
    )
    state = CustomerState(CID)
    opened = T0 + timedelta(hours=1)
    feed(engine, state, [account(T0), ticket(opened, "t1", "opened", "question", "critical")])
    result = engine.apply(
        state, ticket(opened + timedelta(hours=1), "t1", "resolved", "question", "critical", "e2")
    )
    assert [e.rule_id for e in result.errors] == ["scoring.health.ratio"]
    [snapshot] = [s.model() for s in result.snapshots]
    ratio = snapshot.health.factors["ratio"]
    assert (ratio.value, ratio.points, ratio.missing) == (None, 0, False)  # the last points
    assert snapshot.health.score == 50
