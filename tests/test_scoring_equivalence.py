"""Random timelines with orders, cancellations, tier overrides and cut points: the engine with
scoring (and a CLV model) gives the same outputs, snapshots and state bytes with or without
sweeps, with dependency tracking or evaluating everything, and with or without the timing
cache. Seeded, so a failure names its
seed."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import rules
from rules.engine import Engine, EngineConfig
from rules.loader import RuleSet, load_rules
from schemas import AlertEvent, InputEvent
from streams.sketch import CutPoints
from streams.state import CustomerState
from tests.factories import CID, T0, account, clv_model, contact, login, order, ticket

PACKS = Path(rules.__file__).resolve().parent / "packs"
CUTS = CutPoints((5.0, 20.0, 60.0, 200.0), (0.5, 1.0, 2.0, 5.0), (50.0, 100.0, 1e3, 1e4), 100, 0.0)
TREND_TIERS = """\
tiers:
  - id: falling
    when: "health_trend_7d <= -10"
  - id: normal
lifecycle:
  - id: mature
health:
  factors:
    - id: crit
      value: open_critical_tickets
      weight: 100
      grid:
        - {below: 1, points: 100}
        - {points: 0}
rules:
  - id: settled
    when: tier_downgraded && days_since_tier_change >= 5
    severity: low
    summary: "x"
"""


class EvaluateAll(Engine):
    def _changed(self, *args: Any) -> frozenset[str] | None:
        return None


Timeline = list[tuple[float, InputEvent | None]]  # None: a sweep up to that time


def timeline(rng: random.Random) -> Timeline:
    t = T0
    renewal = T0 + timedelta(days=200)
    out: Timeline = [(t.timestamp(), account(t, event_id="acct", renewal_at=renewal))]
    orders = 0
    for i in range(rng.randint(1, 40)):
        t += timedelta(seconds=rng.randint(0, 12 * 86400))
        if rng.random() < 0.4:
            out.append(((t - timedelta(seconds=rng.randint(0, 86400))).timestamp(), None))
        kind = rng.choice(
            ["login", "login", "order", "order", "cancel", "ticket", "acct", "contact"]
        )
        eid = f"e{i}"
        event: InputEvent
        if kind == "login":
            event = login(t, event_id=eid)
        elif kind == "order":
            orders += 1
            amount = rng.choice(["100.00", "600000.00", "2000000.00"])
            event = order(t, f"o{orders}", rng.choice(["paid", "placed"]), amount, event_id=eid)
        elif kind == "cancel":
            status = rng.choice(["cancelled", "paid", "refunded"])
            event = order(
                t, f"o{rng.randint(0, max(orders, 1))}", status, "600000.00", event_id=eid
            )
        elif kind == "ticket":
            event = ticket(
                t,
                f"t{rng.randint(0, 3)}",
                rng.choice(["opened", "resolved"]),
                rng.choice(["complaint", "question"]),
                rng.choice(["low", "critical"]),
                event_id=eid,
            )
        elif kind == "contact":
            event = contact(
                t, f"c{rng.randint(0, 2)}", rng.choice(["added", "departed"]), event_id=eid
            )
        else:
            override = rng.choice([None, "key", "strategic", "bogus"])
            event = account(t, event_id=eid, tier_override=override, renewal_at=renewal)
        out.append((t.timestamp(), event))
    out.append(((t + timedelta(days=rng.choice([5, 40, 400]))).timestamp(), None))
    return out


def run(
    cls: type[Engine],
    ruleset: RuleSet,
    steps: Timeline,
    sweeps: bool,
    cuts: Any,
    memo_size: int = 4096,
) -> Any:
    config = EngineConfig(snapshot_interval=3600.0, clv_model=clv_model(), memo_size=memo_size)
    engine = cls(ruleset, config, wall_clock=lambda: 0.0)
    engine.set_cut_points(cuts)
    state = CustomerState(CID)
    outs: list[Any] = []
    snaps: list[Any] = []
    for ts, event in steps:
        if event is not None:
            result = engine.apply(state, event)
        elif sweeps:
            result = engine.advance(state, ts)
        else:
            continue
        outs += result.outputs
        snaps += [s.model() for s in result.snapshots]
    result = engine.advance(state, steps[-1][0])
    outs += result.outputs
    snaps += [s.model() for s in result.snapshots]
    shown = [
        (o.rule_id, o.status, o.fired_at, o.resolved_at)
        if isinstance(o, AlertEvent)
        else (o.rule_id, o.status, o.task_id)
        for o in outs
    ]
    shown_snaps = [(s.as_of, s.event, s.tier, s.health, s.rfm, s.clv) for s in snaps]
    return shown, shown_snaps, state.to_bytes()


@pytest.fixture(scope="module", params=["builtin", "trend-tiers"])
def ruleset(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    if request.param == "builtin":
        return load_rules([PACKS])
    path = tmp_path_factory.mktemp("pack") / "pack.yaml"
    path.write_text(TREND_TIERS, encoding="utf-8")
    return load_rules([path])


@pytest.mark.parametrize("seed", range(40))
def test_sweeps_and_tracking_change_nothing(ruleset: RuleSet, seed: int) -> None:
    rng = random.Random(seed)
    steps = timeline(rng)
    cuts = CUTS if seed % 2 else None
    swept = run(Engine, ruleset, steps, True, cuts)
    plain = run(Engine, ruleset, steps, False, cuts)
    everything = run(EvaluateAll, ruleset, steps, False, cuts)
    # no cache of next change times and CEL results: they must not matter
    uncached = run(Engine, ruleset, steps, True, cuts, memo_size=0)
    assert swept == plain
    assert everything == plain
    assert uncached == swept
