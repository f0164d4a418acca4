"""The engine against golden records: outputs of the code before the cheaper core (918c846)
and everything of the code since the wake-ups on flips.

Synthetic traffic with replays, late events (evaluated at the partition watermark), task
updates answering the engine's own tasks (acknowledged, done, dismissed with and without a
snooze), cut points that change mid-stream and small caches runs through the engine as the
worker drives it: each customer's events in order, the next deadline of every dirty customer
at each flush, hourly sweeps of the due customers. Per customer, four digests: the outputs
(alerts, tasks, tier notices, errors, forgotten records, whether each event applied), the
health snapshots, the deadlines, and the final state bytes.

``golden/engine_918c846.json`` holds the four digests written by the code at 918c846.
Since then a customer is woken only when something can flip (a day counter compared with an
expression is probed for the day its rule flips; the RFM recency score and a health trend
that a decision reads wake the customer when they move), so deadlines and state bookkeeping
differ, and so do the outputs that used to depend on when unrelated rules happened to wake a
customer: a snapshot for a recency score that moved with time (it now goes out that
midnight, not at the next incidental evaluation) and a tier that reads the health trend (it
now changes when the trend moves). :data:`SAME_AS_918C846` lists what must still be equal.
``golden/engine_wakeups.json`` holds all four digests of the current code, so that any other
change shows (``python -m tests.test_engine_golden --write``).
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from rules.engine import Engine, EngineConfig, Result
from rules.loader import RuleSet, load_rules
from schemas import InputEvent, TaskEvent, TaskUpdateEvent, decode_input
from streams.deadlines import DeadlineIndex
from streams.settings import BUILTIN_PACKS
from streams.sketch import CutPoints
from streams.state import CustomerState
from streams.synthetic import Persona, generate, plan_customers
from tests.factories import clv_model

GOLDEN_918C846 = Path(__file__).parent / "golden" / "engine_918c846.json"
GOLDEN = Path(__file__).parent / "golden" / "engine_wakeups.json"
PARTS = ("outputs", "snapshots", "deadlines", "state")
SAME_AS_918C846 = {
    # no RFM cut points, so no recency score, and no decision reads the health trend
    "builtin": ("outputs", "snapshots"),
    # cut points: snapshots for a recency score that moved go out when it moves
    "builtin-troubled-clv-cuts": ("outputs",),
    # tiers read the health trend and the recency-based F score: tier notices move too
    "trend-pack": (),
}
"""Per scenario, the parts that must equal the code's at 918c846 (see the module doc)."""
START = datetime(2025, 11, 3, 7, 0, tzinfo=UTC)
HOUR = 3600.0
TROUBLED = {
    Persona.HEALTHY: 0.4,
    Persona.GOING_QUIET: 0.2,
    Persona.COMPLAINING: 0.2,
    Persona.LOSING_CHAMPION: 0.2,
}
CUTS = (
    CutPoints((5.0, 20.0, 40.0, 80.0), (0.5, 1.0, 2.0, 4.0), (50.0, 200.0, 1e3, 1e4), 100, 0.0),
    CutPoints((2.0, 10.0, 30.0, 60.0), (1.0, 2.0, 3.0, 5.0), (100.0, 500.0, 2e3, 5e4), 200, 0.0),
)
TREND_PACK = """\
tiers:
  - id: falling
    when: "health_trend_7d <= -10"
  - id: buyer
    when: "rfm_f_score >= 3 && orders_90d >= 2"
  - id: normal
lifecycle:
  - id: quiet
    when: "days_since_last_login >= 10"
  - id: mature
health:
  factors:
    - id: crit
      value: open_critical_tickets
      weight: 60
      grid:
        - {below: 1, points: 100}
        - {points: 0}
    - id: rhythm
      value: order_overdue_ratio
      missing_when: "order_count < 2"
      weight: 40
      grid:
        - {below: 1.5, points: 100}
        - {below: 3.0, points: 50}
        - {points: 0}
rules:
  - id: settled
    when: tier_downgraded && days_since_tier_change >= 5
    severity: low
    summary: "x"
  - id: quiet-buyer
    when: days_since_last_login >= 7 && orders_90d >= 1
    for: 1d
    keep_firing_for: 2d
    severity: high
    max_fires: {count: 2, per: 30d}
    summary: "{{ name }} quiet for {{ days_since_last_login }} days"
    task:
      assignee: csm
      due: 8h
      business_hours: true
      escalate_after: 1d
  - id: risky-renewal
    applies_to: has_renewal_date
    when: days_to_renewal <= 200 && open_high_alerts > 0
    severity: critical
    cooldown: 3d
    summary: "renewal in {{ days_to_renewal }} days"
    task:
      assignee: owner
      cc: [csm]
      due: 2d
"""


@dataclass(frozen=True)
class Scenario:
    """One run: traffic, pack and engine settings."""

    name: str
    seed: int
    customers: int
    days: int
    pack: str = "builtin"  # or "trend"
    troubled: bool = False
    clv: bool = False
    cuts: bool = False
    memo_size: int = 4096
    snapshot_interval: float = 3600.0
    lateness: float = 300.0
    flush_every: int = 200


SCENARIOS = (
    Scenario("builtin", seed=1, customers=60, days=150),
    Scenario(
        "builtin-troubled-clv-cuts",
        seed=2,
        customers=50,
        days=120,
        troubled=True,
        clv=True,
        cuts=True,
        memo_size=16,
        snapshot_interval=0.0,
        lateness=7200.0,
        flush_every=37,
    ),
    Scenario(
        "trend-pack",
        seed=3,
        customers=40,
        days=120,
        pack="trend",
        troubled=True,
        clv=True,
        cuts=True,
        memo_size=64,
        lateness=86400.0,
    ),
)


def _ruleset(pack: str, tmp: Path) -> RuleSet:
    if pack == "builtin":
        return load_rules([BUILTIN_PACKS])
    path = tmp / "trend.yaml"
    path.write_text(TREND_PACK, encoding="utf-8")
    return load_rules([path])


def _stream(s: Scenario) -> list[InputEvent]:
    """The scenario's events in arrival order, with replays and late arrivals."""
    rng = random.Random(s.seed)
    plans = plan_customers(s.customers, seed=s.seed, mix=TROUBLED if s.troubled else None)
    records = generate(plans, start=START, days=s.days, seed=s.seed)
    out = [decode_input(r.topic_kind, orjson.dumps(r.value)) for r in records]
    for _ in range(len(out) // 25):  # replays: an earlier event read again
        i = rng.randrange(len(out))
        out.insert(rng.randrange(i, len(out) + 1), out[i])
    for _ in range(len(out) // 30):  # late: an event moved behind later ones
        i = rng.randrange(len(out))
        out.insert(min(len(out), i + rng.randint(1, 80)), out.pop(i))
    return out


def _answer(task: TaskEvent, at: float) -> TaskUpdateEvent | None:
    """A deterministic CS-tool reaction to a task (or none), some hours after it."""
    pick = int(hashlib.blake2b(task.task_id.encode(), digest_size=4).hexdigest(), 16)
    kind = pick % 6
    later = at + 1800.0 + (pick >> 3) % (72 * 3600)
    if kind >= 4:
        return None
    status = ("acknowledged", "done", "dismissed", "dismissed")[kind]
    snooze = None
    if kind == 3:
        snooze = datetime.fromtimestamp(later + ((pick >> 8) % 20 - 4) * 86400.0, UTC)
    return TaskUpdateEvent(
        event_id=f"tu-{task.task_id}-{status}",
        customer_id=task.customer_id,
        occurred_at=datetime.fromtimestamp(later, UTC),
        task_id=task.task_id,
        status=status,
        snooze_until=snooze,
    )


def drive(s: Scenario, tmp: Path) -> dict[str, Any]:
    """Run the scenario; per customer, the sequence of what the engine produced, and its
    final state bytes (hex)."""
    ruleset = _ruleset(s.pack, tmp)
    config = EngineConfig(
        clv_model=clv_model() if s.clv else None,
        memo_size=s.memo_size,
        snapshot_interval=s.snapshot_interval,
    )
    engine = Engine(ruleset, config, wall_clock=lambda: 0.0)
    states: dict[str, CustomerState] = {}
    seen: dict[str, list[Any]] = {}
    index = DeadlineIndex()
    dirty: set[str] = set()
    updates: list[tuple[float, int, TaskUpdateEvent]] = []
    counter = 0
    events = _stream(s)
    first = events[0].occurred_at.timestamp()
    next_sweep = first + HOUR
    cut_times = [first + 30 * 86400.0, first + 75 * 86400.0] if s.cuts else []
    newest = float("-inf")

    def record(customer_id: str, what: str, result: Result) -> None:
        nonlocal counter
        log = seen.setdefault(customer_id, [])
        log.append(
            [
                what,
                result.applied,
                [o.model_dump(mode="json") for o in result.outputs],
                [orjson.loads(h.to_bytes()) for h in result.snapshots],
                [(e.rule_id, e.customer_id, e.message) for e in result.errors],
                result.forgotten,
            ]
        )
        for out in result.outputs:
            if isinstance(out, TaskEvent) and out.status in ("open", "escalated"):
                answer = _answer(out, out.due_at.timestamp() - 4 * HOUR)
                if answer is not None:
                    counter += 1
                    heapq.heappush(updates, (answer.occurred_at.timestamp(), counter, answer))

    def state_of(customer_id: str) -> CustomerState:
        state = states.get(customer_id)
        if state is None:
            state = states[customer_id] = CustomerState(customer_id)
        return state

    def apply(event: InputEvent, not_before: float) -> None:
        state = state_of(event.customer_id)
        record(event.customer_id, f"apply {event.event_id}", engine.apply(state, event, not_before))
        dirty.add(event.customer_id)

    def flush() -> None:
        for customer_id in sorted(dirty):
            due = engine.next_deadline(states[customer_id])
            seen[customer_id].append(["deadline", due])
            index.set(customer_id, due)
        dirty.clear()

    for n, event in enumerate(events):
        ts = event.occurred_at.timestamp()
        mark = newest - s.lateness
        while cut_times and ts >= cut_times[0]:
            cut_times.pop(0)
            flush()
            engine.set_cut_points(CUTS[len(CUTS) - 1 - len(cut_times)])
        while ts >= next_sweep:
            flush()
            for customer_id in index.pop_due(next_sweep):
                state = states[customer_id]
                record(customer_id, f"sweep {next_sweep}", engine.advance(state, next_sweep))
                due = engine.next_deadline(state)
                seen[customer_id].append(["deadline", due])
                index.set(customer_id, due)
            next_sweep += HOUR
        while updates and updates[0][0] <= ts:
            apply(heapq.heappop(updates)[2], max(mark, 0.0))
        apply(event, max(mark, 0.0))
        newest = max(newest, ts)
        if (n + 1) % s.flush_every == 0:
            flush()
    flush()
    end = newest + 40 * 86400.0
    for customer_id in sorted(states):
        record(customer_id, "end", engine.advance(states[customer_id], end))
        seen[customer_id].append(["deadline", engine.next_deadline(states[customer_id])])
    return {
        customer_id: {"log": seen[customer_id], "state": states[customer_id].to_bytes().hex()}
        for customer_id in sorted(states)
    }


def _digest(value: Any) -> str:
    return hashlib.blake2b(orjson.dumps(value), digest_size=16).hexdigest()


def _parts(log: list[Any], state: str) -> dict[str, Any]:
    """A customer's log split into :data:`PARTS`: evaluations that produced nothing and the
    hour of the sweep that produced something are left out of the outputs."""
    outputs, snapshots, deadlines = [], [], []
    for entry in log:
        if entry[0] == "deadline":
            deadlines.append(entry[1])
            continue
        what, applied, outs, snaps, errors, forgotten = entry
        snapshots.extend(snaps)
        if what.startswith("apply") or outs or errors or forgotten:
            label = "sweep" if what.startswith("sweep") else what
            outputs.append([label, applied, outs, errors, forgotten])
    return {"outputs": outputs, "snapshots": snapshots, "deadlines": deadlines, "state": state}


def digests(run: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Per customer: a digest of each of :data:`PARTS`."""
    return {
        customer_id: {part: _digest(value) for part, value in _parts(v["log"], v["state"]).items()}
        for customer_id, v in run.items()
    }


def _differing(
    golden: dict[str, dict[str, str]], got: dict[str, dict[str, str]], parts: tuple[str, ...]
) -> dict[str, list[str]]:
    """Per part, the customers whose digest differs."""
    assert got.keys() == golden.keys()
    found = {p: sorted(c for c in golden if golden[c][p] != got[c][p]) for p in parts}
    return {p: customers for p, customers in found.items() if customers}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict[str, str]]]:
    """Each scenario's digests, run once for both records."""
    tmp = tmp_path_factory.mktemp("golden")
    return {s.name: digests(drive(s, tmp)) for s in SCENARIOS}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_engine_matches_the_golden_record(
    scenario: Scenario, runs: dict[str, dict[str, dict[str, str]]]
) -> None:
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))[scenario.name]
    differing = _differing(golden, runs[scenario.name], PARTS)
    assert not differing, f"customers differ by part: { {p: c[:5] for p, c in differing.items()} }"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_outputs_match_the_code_before_the_cheaper_core(
    scenario: Scenario, runs: dict[str, dict[str, dict[str, str]]]
) -> None:
    golden = json.loads(GOLDEN_918C846.read_text(encoding="utf-8"))[scenario.name]
    same = SAME_AS_918C846[scenario.name]
    differing = _differing(golden, runs[scenario.name], same)
    assert not differing, f"customers differ by part: { {p: c[:5] for p, c in differing.items()} }"
    if scenario.name == "builtin":  # the wake-ups did change: the record is not vacuous
        assert _differing(golden, runs[scenario.name], ("deadlines",))


def main() -> None:
    """Write the golden digests (``--write``) or dump one scenario's full run as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--dump", help="scenario name: print its full run as JSON")
    parser.add_argument("--tmp", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    if args.dump:
        scenario = next(s for s in SCENARIOS if s.name == args.dump)
        print(orjson.dumps(drive(scenario, args.tmp)).decode())
        return
    out = {s.name: digests(drive(s, args.tmp)) for s in SCENARIOS}
    if args.write:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    else:
        print(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
