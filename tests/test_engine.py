"""Tests of the pure rules engine (rules.engine) with the built-in pack and small tmp packs."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rules
from rules.batch import apply_batch, group_by_customer
from rules.calendar import BusinessCalendar
from rules.engine import Engine, EngineConfig, Output, Result, alert_id_for, run_batch
from rules.loader import RuleSet, load_rules
from schemas import (
    AlertEvent,
    InputEvent,
    TaskEvent,
)
from streams.features import compute
from streams.state import DAY, CustomerState
from tests.factories import CID, T0, account, contact, login, order, task_update, ticket

CORE_PACK = Path(rules.__file__).resolve().parent / "packs" / "core.yaml"
WALL = datetime(2030, 1, 1, tzinfo=UTC)


# -- helpers -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def core() -> RuleSet:
    return load_rules([CORE_PACK])


def make_engine(ruleset: RuleSet, **config: Any) -> Engine:
    return Engine(ruleset, EngineConfig(**config), wall_clock=WALL.timestamp)


def pack(tmp_path: Path, text: str, name: str = "pack.yaml") -> RuleSet:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_rules([path], default_scoring=False)  # the rule alone decides deadlines


def alerts(result: Result, rule_id: str | None = None) -> list[AlertEvent]:
    return [
        o
        for o in result.outputs
        if isinstance(o, AlertEvent) and (rule_id is None or o.rule_id == rule_id)
    ]


def tasks(result: Result, rule_id: str | None = None) -> list[TaskEvent]:
    return [
        o
        for o in result.outputs
        if isinstance(o, TaskEvent) and (rule_id is None or o.rule_id == rule_id)
    ]


def summary(outputs: list[Output]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for o in outputs:
        if isinstance(o, AlertEvent):
            out.append(("alert", o.rule_id, o.status, o.fired_at, o.resolved_at, o.alert_id))
        else:
            out.append(("task", o.rule_id, o.status, o.due_at, o.task_id, o.assignee))
    return out


def feed(engine: Engine, state: CustomerState, events: list[InputEvent]) -> Result:
    total = Result()
    for event in events:
        total.extend(engine.apply(state, event))
    return total


# -- inactivity ------------------------------------------------------------------------------------
def test_inactivity_fires_exactly_fourteen_days_after_last_login(core: RuleSet) -> None:
    engine = make_engine(core)
    state = CustomerState(CID)
    start = feed(engine, state, [account(T0 - timedelta(hours=1)), login(T0)])
    assert start.outputs == []
    due = T0.timestamp() + 14 * DAY

    early = engine.advance(state, due - 1)
    assert alerts(early, "inactivity") == []
    assert early.errors == []
    assert engine.next_deadline(state) == due

    fired = engine.advance(state, due)
    [alert] = alerts(fired, "inactivity")
    assert alert.status == "firing"
    assert alert.fired_at == T0 + timedelta(days=14)
    assert alert.resolved_at is None
    assert alert.severity == "medium"
    assert alert.summary == "Acme: no login for 14 days"
    assert alert.evidence["days_since_last_login"] == 14
    assert alert.emitted_at == WALL
    [task] = tasks(fired, "inactivity")
    assert task.status == "open"
    assert task.alert_id == alert.alert_id
    assert (task.assignee, task.assignee_role, task.cc) == ("csm-3", "csm", ["am-7"])
    assert task.due_at == alert.fired_at + timedelta(hours=72)
    assert task.priority == "medium"
    assert task.playbook == "re-engagement"
    assert state.alerts["inactivity"]["s"] == "firing"

    # advancing further does not fire again
    assert alerts(engine.advance(state, due + 3 * DAY), "inactivity") == []


def test_login_resolves_inactivity_and_cancels_task(core: RuleSet) -> None:
    engine = make_engine(core)
    state = CustomerState(CID)
    feed(engine, state, [account(T0 - timedelta(hours=1)), login(T0)])
    fired = engine.advance(state, T0.timestamp() + 15 * DAY)
    [opened] = tasks(fired, "inactivity")
    [firing] = alerts(fired, "inactivity")

    back = T0 + timedelta(days=15, hours=2)
    result = engine.apply(state, login(back))
    [resolved] = alerts(result, "inactivity")
    assert resolved.status == "resolved"
    assert resolved.alert_id == firing.alert_id
    assert resolved.fired_at == firing.fired_at
    assert resolved.resolved_at == back
    [cancelled] = tasks(result, "inactivity")
    assert cancelled.status == "cancelled"
    assert cancelled.task_id == opened.task_id
    assert cancelled.alert_id == firing.alert_id
    assert "inactivity" not in state.alerts


def test_event_without_advance_fires_and_resolves_in_same_order(core: RuleSet) -> None:
    events = [account(T0 - timedelta(hours=1)), login(T0)]
    comeback = login(T0 + timedelta(days=20))

    swept = make_engine(core)
    s1 = CustomerState(CID)
    out1 = feed(swept, s1, events).outputs
    out1 += swept.advance(s1, T0.timestamp() + 16 * DAY).outputs
    out1 += swept.apply(s1, comeback).outputs

    direct = make_engine(core)
    s2 = CustomerState(CID)
    out2 = feed(direct, s2, events).outputs
    out2 += direct.apply(s2, comeback).outputs

    def key(outputs: list[Output]) -> list[tuple[str, str, datetime]]:
        return [(o.rule_id, o.status, o.fired_at) for o in outputs if isinstance(o, AlertEvent)]

    fired = T0 + timedelta(days=14)
    assert key(out2) == [("inactivity", "firing", fired), ("inactivity", "resolved", fired)]
    assert key(out1) == key(out2)
    assert summary(out1) == summary(out2)
    assert s1.to_bytes() == s2.to_bytes()


# -- complaint spike ----------------------------------------------------------------------------
def test_complaint_spike_fires_with_zero_baseline_and_resolves_after_ageing_out(
    core: RuleSet,
) -> None:
    engine = make_engine(core)
    state = CustomerState(CID)
    day = T0 + timedelta(days=1)
    feed(engine, state, [account(T0), login(T0)])
    first_two = feed(engine, state, [ticket(day, "t-1"), ticket(day + timedelta(hours=1), "t-2")])
    assert alerts(first_two, "complaint-spike") == []
    third = engine.apply(state, ticket(day + timedelta(hours=2), "t-3"))
    [alert] = alerts(third, "complaint-spike")
    assert alert.status == "firing"
    assert alert.fired_at == day + timedelta(hours=2)
    assert alert.evidence == {"complaints_7d": 3, "complaints_90d_weekly_baseline": 0.0}
    assert alert.summary == "Acme: 3 complaints in 7 days (baseline 0.00/week)"
    [task] = tasks(third, "complaint-spike")
    assert task.priority == "high"
    assert task.due_at == alert.fired_at + timedelta(hours=24)

    # still firing on the last day the complaints are within the 7-day window
    last_day = datetime(2024, 3, 8, 23, 59, tzinfo=UTC)
    assert alerts(engine.advance(state, last_day.timestamp()), "complaint-spike") == []
    later = engine.advance(state, (day + timedelta(days=8)).timestamp())
    [resolved] = alerts(later, "complaint-spike")
    assert resolved.status == "resolved"
    assert resolved.alert_id == alert.alert_id
    assert resolved.resolved_at == datetime(2024, 3, 9, tzinfo=UTC)  # day + 7, midnight
    assert [t.status for t in tasks(later, "complaint-spike")] == ["cancelled"]


def test_complaint_spike_needs_three_complaints(core: RuleSet) -> None:
    engine = make_engine(core)
    state = CustomerState(CID)
    day = T0 + timedelta(days=1)
    events: list[InputEvent] = [
        ticket(day, "t-1"),
        ticket(day, "t-2"),
        ticket(day, "t-3", kind="incident"),  # not a complaint
        ticket(day, "t-1", status="reopened"),  # same ticket again
    ]
    assert alerts(feed(engine, state, events), "complaint-spike") == []


def test_complaint_spike_silent_when_own_baseline_is_high(core: RuleSet) -> None:
    engine = make_engine(core)
    state = CustomerState(CID)
    spike = T0 + timedelta(days=100)
    # a steady two complaints per week (every 4 days) for three months before the spike: no
    # 7-day window ever holds three of them
    events: list[InputEvent] = [account(T0)]
    events += [
        ticket(spike - timedelta(days=d), f"base-{d}") for d in range(92, 7, -4)
    ]  # days spike-92 ... spike-8
    events += [ticket(spike + timedelta(hours=h), f"spike-{h}") for h in range(3)]
    result = feed(engine, state, events)
    at = (spike + timedelta(hours=2)).timestamp()
    values = compute(state, at, frozenset({"complaints_7d", "complaints_90d_weekly_baseline"}))
    assert values["complaints_7d"] == 3
    assert values["complaints_90d_weekly_baseline"] == pytest.approx(22 * 7 / 90)
    assert alerts(result, "complaint-spike") == []
    assert result.errors == []


# -- key contact departed ----------------------------------------------------------------------
def test_key_contact_departed_alert_and_task_to_owner(core: RuleSet) -> None:
    engine = make_engine(core)
    state = CustomerState(CID)
    left = T0 + timedelta(days=2)
    feed(engine, state, [account(T0), login(T0), contact(T0, "c-9", "added", name="Ada")])
    result = engine.apply(state, contact(left, "c-9", "departed", name="Ada"))
    [alert] = alerts(result, "key-contact-departed")
    assert alert.status == "firing"
    assert alert.fired_at == left
    assert alert.summary == "Acme: key contact Ada left"
    assert alert.labels == {"team": "customer-success", "family": "relationship"}
    assert alert.evidence == {"key_contacts_departed_30d": 1}
    [task] = tasks(result, "key-contact-departed")
    assert task.assignee == "am-7"
    assert task.assignee_role == "owner"
    assert task.cc == ["csm-3", "sales_director"]  # csm from the account; unknown role kept
    assert task.due_at == left + timedelta(hours=24)
    assert task.playbook == "relationship-rescue"
    assert task.priority == "high"
    assert task.title == alert.summary


def test_key_contact_departure_resolves_after_thirty_days(core: RuleSet) -> None:
    engine = make_engine(core)
    state = CustomerState(CID)
    left = T0 + timedelta(days=2)
    feed(engine, state, [account(T0), contact(left, "c-9", "departed")])
    early = engine.advance(state, (left + timedelta(days=30)).timestamp() - 1)
    assert alerts(early, "key-contact-departed") == []
    later = engine.advance(state, (left + timedelta(days=31)).timestamp())
    [resolved] = alerts(later, "key-contact-departed")
    assert resolved.status == "resolved"
    # the 30-day window ends at left + 30d; with day granularity the resolution is evaluated
    # at the first deadline from then on: here the inactivity rule's whole-day mark (first
    # seen 09:30, like the departure), otherwise the next UTC midnight
    assert resolved.resolved_at == left + timedelta(days=30)


def test_task_cc_left_as_role_name_when_account_lacks_it(core: RuleSet) -> None:
    engine = make_engine(core)
    state = CustomerState(CID)
    events: list[InputEvent] = [account(T0, csm=None), contact(T0, "c-9", "departed")]
    [task] = tasks(feed(engine, state, events), "key-contact-departed")
    assert task.assignee == "am-7"
    assert task.cc == ["csm", "sales_director"]


def test_fallback_assignee_when_account_lacks_role(core: RuleSet) -> None:
    engine = make_engine(core, fallback_assignee="triage")
    state = CustomerState(CID)
    # no csm on the account: inactivity (assignee csm) falls back
    feed(engine, state, [account(T0, csm=None), login(T0)])
    [task] = tasks(engine.advance(state, T0.timestamp() + 14 * DAY), "inactivity")
    assert task.assignee == "triage"
    assert task.assignee_role == "fallback"
    assert task.cc == ["am-7"]


def test_default_fallback_assignee_without_account(core: RuleSet) -> None:
    engine = make_engine(core)
    state = CustomerState(CID)
    [task] = tasks(engine.apply(state, contact(T0, "c-9", "departed")), "key-contact-departed")
    assert (task.assignee, task.assignee_role) == ("cs-queue", "fallback")
    assert task.cc == ["csm", "sales_director"]


# -- cooldown -------------------------------------------------------------------------------------
OPEN_TICKET_RULE = """\
- id: open-ticket
  when: open_tickets > 0
  severity: low
  cooldown: 1d
  summary: "{{ name }} has {{ open_tickets }} open tickets"
"""


def test_cooldown_blocks_refire_until_it_ends(tmp_path: Path) -> None:
    engine = make_engine(pack(tmp_path, OPEN_TICKET_RULE))
    state = CustomerState(CID)
    t = T0.timestamp()
    fired = engine.apply(state, ticket(T0, "t-1"))
    assert [(a.status, a.fired_at) for a in alerts(fired)] == [("firing", T0)]
    assert tasks(fired) == []  # the rule has no task
    resolved = engine.apply(state, ticket(T0 + timedelta(hours=1), "t-1", status="closed"))
    assert [a.status for a in alerts(resolved)] == ["resolved"]

    blocked = engine.apply(state, ticket(T0 + timedelta(hours=2), "t-2"))
    assert blocked.outputs == []
    assert engine.next_deadline(state) == t + DAY
    assert engine.advance(state, t + DAY - 1).outputs == []
    refired = engine.advance(state, t + DAY)
    [alert] = alerts(refired)
    assert alert.status == "firing"
    assert alert.fired_at == T0 + timedelta(days=1)
    assert alert.alert_id != alerts(fired)[0].alert_id


def test_core_complaint_spike_cooldown_delays_refire(core: RuleSet) -> None:
    engine = make_engine(core)
    state = CustomerState(CID)
    first = datetime(2024, 3, 2, 23, tzinfo=UTC)
    feed(engine, state, [account(T0), login(T0)])
    spike = feed(engine, state, [ticket(first + timedelta(minutes=m), f"a-{m}") for m in (0, 1, 2)])
    assert [a.status for a in alerts(spike, "complaint-spike")] == ["firing"]
    fired_at = (first + timedelta(minutes=2)).timestamp()

    # the complaints age out at midnight, 6 days later: resolved, still within the 7-day cooldown
    again = datetime(2024, 3, 9, 1, tzinfo=UTC)
    second = feed(
        engine, state, [ticket(again + timedelta(minutes=m), f"b-{m}") for m in (0, 1, 2)]
    )
    assert [(a.status, a.resolved_at) for a in alerts(second, "complaint-spike")] == [
        ("resolved", datetime(2024, 3, 9, tzinfo=UTC))
    ]
    values = compute(state, again.timestamp() + 300, frozenset({"complaints_7d"}))
    assert values == {"complaints_7d": 3}  # the rule holds again, but cooldown blocks it
    cooldown_end = fired_at + 7 * DAY
    assert engine.advance(state, cooldown_end - 1).outputs == []
    refired = engine.advance(state, cooldown_end)
    [alert] = alerts(refired, "complaint-spike")
    assert alert.status == "firing"
    assert alert.fired_at.timestamp() == cooldown_end


# -- determinism -----------------------------------------------------------------------------
def test_alert_ids_are_deterministic_across_engines(core: RuleSet) -> None:
    events: list[InputEvent] = [
        account(T0),
        login(T0),
        contact(T0 + timedelta(days=1), "c-9", "departed"),
        login(T0 + timedelta(days=20)),
    ]
    runs = []
    for _ in range(2):
        engine = Engine(load_rules([CORE_PACK]), wall_clock=WALL.timestamp)
        state = CustomerState(CID)
        runs.append(summary(feed(engine, state, events).outputs))
    assert runs[0] == runs[1]
    ids = {row[-1] for row in runs[0] if row[0] == "alert"}
    assert len(ids) == 2  # key-contact-departed and inactivity

    rule = next(r for r in core.rules if r.id == "key-contact-departed")
    fired_at = (T0 + timedelta(days=1)).timestamp()
    assert alert_id_for(CID, rule, fired_at) in ids
    assert alert_id_for("other", rule, fired_at) not in ids
    assert alert_id_for(CID, rule, fired_at + 1) not in ids


def test_run_batch_creates_states_and_skips_duplicates(core: RuleSet) -> None:
    engine = make_engine(core)
    states: dict[str, CustomerState] = {}
    departure = contact(T0, "c-9", "departed", customer_id="b")
    result = run_batch(engine, states, [account(T0, customer_id="a"), departure, departure])
    assert set(states) == {"a", "b"}
    assert result.applied is True
    assert [a.customer_id for a in alerts(result)] == ["b"]
    again = run_batch(engine, states, [departure])
    assert again.applied is False
    assert again.outputs == []


def test_duplicate_event_is_not_evaluated(core: RuleSet) -> None:
    engine = make_engine(core)
    state = CustomerState(CID)
    event = contact(T0, "c-9", "departed")
    assert engine.apply(state, event).applied is True
    before = state.to_bytes()
    again = engine.apply(state, event)
    assert (again.applied, again.outputs, again.evaluations) == (False, [], 0)
    assert state.to_bytes() == before


# -- for: -------------------------------------------------------------------------------------
PENDING_RULE = """\
- id: lingering-ticket
  when: open_tickets > 0
  for: 2h
  severity: medium
  summary: "{{ customer_id }}: a ticket open for two hours"
"""


def test_for_rule_stays_pending_then_fires_after_duration(tmp_path: Path) -> None:
    engine = make_engine(pack(tmp_path, PENDING_RULE))
    state = CustomerState(CID)
    t = T0.timestamp()
    opened = engine.apply(state, ticket(T0, "t-1"))
    assert opened.outputs == []
    assert state.alerts["lingering-ticket"] == {"s": "pending", "since": t}
    assert engine.next_deadline(state) == t + 2 * 3600

    # an unrelated event inside the window keeps it pending, since unchanged
    assert engine.apply(state, ticket(T0 + timedelta(hours=1), "t-2")).outputs == []
    assert state.alerts["lingering-ticket"]["since"] == t
    assert engine.advance(state, t + 2 * 3600 - 1).outputs == []

    fired = engine.advance(state, t + 2 * 3600)
    [alert] = alerts(fired)
    assert alert.status == "firing"
    assert alert.fired_at == T0 + timedelta(hours=2)
    assert alert.summary == "cust-1: a ticket open for two hours"


def test_for_rule_pending_cleared_when_condition_ends(tmp_path: Path) -> None:
    engine = make_engine(pack(tmp_path, PENDING_RULE))
    state = CustomerState(CID)
    engine.apply(state, ticket(T0, "t-1"))
    closed = engine.apply(state, ticket(T0 + timedelta(hours=1), "t-1", status="closed"))
    assert closed.outputs == []
    assert "lingering-ticket" not in state.alerts
    assert engine.next_deadline(state) is None
    assert engine.advance(state, T0.timestamp() + 10 * DAY).outputs == []
    # a later event after the window does not fire from the stale start either
    late = engine.apply(state, ticket(T0 + timedelta(days=1), "t-9"))
    assert late.outputs == []
    assert state.alerts["lingering-ticket"]["since"] == (T0 + timedelta(days=1)).timestamp()


def test_for_rule_fires_on_event_after_duration_without_sweep(tmp_path: Path) -> None:
    engine = make_engine(pack(tmp_path, PENDING_RULE))
    state = CustomerState(CID)
    engine.apply(state, ticket(T0, "t-1"))
    result = engine.apply(state, login(T0 + timedelta(hours=5)))
    assert [(a.status, a.fired_at) for a in alerts(result)] == [("firing", T0 + timedelta(hours=2))]


TITLED_TASK_RULE = """\
- id: titled
  when: open_tickets > 0
  severity: low
  summary: "{{ open_tickets }} open"
  task:
    assignee: csm
    due: 1h
    title: "Call {{ name }} ({{ segment }})"
"""


def test_cancelled_task_keeps_the_opened_title(tmp_path: Path) -> None:
    engine = make_engine(pack(tmp_path, TITLED_TASK_RULE))
    state = CustomerState(CID)
    engine.apply(state, account(T0, segment="smb"))
    [opened] = tasks(engine.apply(state, ticket(T0, "t-1")))
    assert opened.title == "Call Acme (smb)"
    [cancelled] = tasks(engine.apply(state, ticket(T0, "t-1", status="closed")))
    assert cancelled.status == "cancelled"
    assert cancelled.task_id == opened.task_id
    assert cancelled.title == opened.title


# -- runtime errors ------------------------------------------------------------------------------
def test_cel_runtime_type_error_is_reported_not_raised(tmp_path: Path) -> None:
    # passes the load-time type check, divides by zero at run time with one open ticket
    broken = "- id: broken\n  when: 100 / (open_tickets - 1) > 0\n  severity: low\n  summary: b\n"
    ruleset = pack(tmp_path, broken + OPEN_TICKET_RULE)
    engine = make_engine(ruleset)
    state = CustomerState(CID)
    result = engine.apply(state, ticket(T0, "t-1"))
    [error] = result.errors
    assert error.rule_id == "broken"
    assert error.customer_id == CID
    assert error.message
    # the other rule is still evaluated and fires
    assert [(a.rule_id, a.status) for a in alerts(result)] == [("open-ticket", "firing")]
    assert result.evaluations == 2
    assert "broken" not in state.alerts


# -- property: sweeps never change the outcome ------------------------------------------------
@st.composite
def timelines(draw: st.DrawFn) -> list[tuple[float, InputEvent | None]]:
    """In-order events over up to 150 days, with optional sweeps (None) in between."""
    steps = draw(st.lists(st.integers(0, 6 * 86400), min_size=1, max_size=25))
    out: list[tuple[float, InputEvent | None]] = []
    t = T0
    for i, gap in enumerate(steps):
        if draw(st.booleans()):
            out.append(((t + timedelta(seconds=draw(st.integers(0, gap)))).timestamp(), None))
        t += timedelta(seconds=gap)
        kind = draw(st.sampled_from(["login", "complaint", "added", "departed", "account"]))
        event: InputEvent
        if kind == "login":
            event = login(t, event_id=f"p-{i}")
        elif kind == "complaint":
            event = ticket(t, f"t-{draw(st.integers(0, 4))}", event_id=f"p-{i}")
        elif kind == "account":
            event = account(t, event_id=f"p-{i}", csm=draw(st.sampled_from([None, "csm-1"])))
        else:
            event = contact(t, f"c-{draw(st.integers(0, 2))}", kind, event_id=f"p-{i}")
        out.append((t.timestamp(), event))
    out.append(((t + timedelta(days=40)).timestamp(), None))
    return out


@settings(max_examples=60, deadline=None)
@given(timeline=timelines())
def test_sweeps_do_not_change_outputs(timeline: list[tuple[float, InputEvent | None]]) -> None:
    ruleset = load_rules([CORE_PACK])
    swept, direct = make_engine(ruleset), make_engine(ruleset)
    s1, s2 = CustomerState(CID), CustomerState(CID)
    out1: list[Output] = []
    out2: list[Output] = []
    for ts, event in timeline:
        if event is None:
            out1 += swept.advance(s1, ts).outputs
        else:
            out1 += swept.apply(s1, event).outputs
            out2 += direct.apply(s2, event).outputs
    end = timeline[-1][0]
    out1 += swept.advance(s1, end).outputs
    out2 += direct.advance(s2, end).outputs
    assert summary(out1) == summary(out2)
    assert s1.to_bytes() == s2.to_bytes()
    # per rule, alerts alternate firing -> resolved
    for rule in ruleset.rules:
        statuses = [o.status for o in out1 if isinstance(o, AlertEvent) and o.rule_id == rule.id]
        assert statuses == ["firing", "resolved"] * (len(statuses) // 2) + (
            ["firing"] if len(statuses) % 2 else []
        )


# -- the full lifecycle ----------------------------------------------------------------------------
CARE_RULE = """\
- id: care
  when: open_tickets > 0
  severity: medium
  summary: "{{ name }} needs care"
  task: {assignee: csm, cc: [owner], due: 2h, escalate_after: 4h}
"""


def at(**delta: float) -> datetime:
    return T0 + timedelta(**delta)


def test_keep_firing_for_holds_the_alert_through_a_short_clear(tmp_path: Path) -> None:
    engine = make_engine(
        pack(tmp_path, OPEN_TICKET_RULE.replace("cooldown: 1d", "keep_firing_for: 2h"))
    )
    state = CustomerState(CID)
    assert alerts(engine.apply(state, ticket(T0, "t-1")))[0].status == "firing"
    assert alerts(engine.apply(state, ticket(at(hours=1), "t-1", "resolved"))) == []
    assert alerts(engine.apply(state, ticket(at(hours=2), "t-2"))) == []  # back within 2 h
    assert alerts(engine.apply(state, ticket(at(hours=3), "t-2", "resolved"))) == []
    [resolved] = alerts(engine.advance(state, at(hours=6).timestamp()))
    assert resolved.resolved_at == at(hours=5)  # clear held for keep_firing_for
    assert resolved.resolution == "cleared"


def test_max_fires_limits_firings_per_period(tmp_path: Path) -> None:
    rule = OPEN_TICKET_RULE.replace("cooldown: 1d", "max_fires: {count: 2, per: 10d}")
    engine = make_engine(pack(tmp_path, rule))
    state = CustomerState(CID)
    fired: list[datetime] = []
    for day in range(6):
        for a in alerts(engine.apply(state, ticket(at(days=day), f"t-{day}"))):
            if a.status == "firing":
                fired.append(a.fired_at)
        engine.apply(state, ticket(at(days=day, hours=1), f"t-{day}", "resolved"))
    assert fired == [at(days=0), at(days=1)]
    # the period slides: 10 days after the first firing, one more is allowed
    [again] = alerts(engine.apply(state, ticket(at(days=10, hours=2), "t-10")))
    assert again.fired_at == at(days=10, hours=2)


def test_dismiss_with_snooze_resolves_and_holds_back_until_then(tmp_path: Path) -> None:
    engine = make_engine(pack(tmp_path, CARE_RULE))
    state = CustomerState(CID)
    feed(engine, state, [account(T0 - timedelta(hours=1))])
    [task] = tasks(engine.apply(state, ticket(T0, "t-1")))
    result = engine.apply(
        state, task_update(at(hours=1), task.task_id, "dismissed", snooze_until=at(days=3))
    )
    [resolved] = alerts(result)
    assert (resolved.status, resolved.resolution, resolved.resolved_at) == (
        "resolved",
        "snoozed",
        at(hours=1),
    )
    assert tasks(result) == []  # the tool closed it; nothing to cancel
    assert alerts(engine.apply(state, ticket(at(days=1), "t-2"))) == []
    assert engine.next_deadline(state) == at(days=3).timestamp()
    [refired] = alerts(engine.advance(state, at(days=4).timestamp()))
    assert (refired.status, refired.fired_at) == ("firing", at(days=3))
    assert refired.alert_id != resolved.alert_id


def test_dismiss_without_snooze_only_closes_the_task(tmp_path: Path) -> None:
    engine = make_engine(pack(tmp_path, CARE_RULE))
    state = CustomerState(CID)
    [task] = tasks(engine.apply(state, ticket(T0, "t-1")))
    assert engine.apply(state, task_update(at(hours=1), task.task_id, "dismissed")).outputs == []
    result = engine.apply(state, ticket(at(hours=2), "t-1", "resolved"))
    assert [a.status for a in alerts(result)] == ["resolved"]
    assert tasks(result) == []  # dismissed: not cancelled again, never escalated


def test_unacknowledged_task_escalates_once_to_the_first_cc_role(tmp_path: Path) -> None:
    engine = make_engine(pack(tmp_path, CARE_RULE))
    state = CustomerState(CID)
    feed(engine, state, [account(T0 - timedelta(hours=1))])
    [task] = tasks(engine.apply(state, ticket(T0, "t-1")))
    assert task.priority == "medium"
    assert engine.next_deadline(state) == at(hours=4).timestamp()
    [escalation] = tasks(engine.advance(state, at(hours=9).timestamp()))
    assert escalation.status == "escalated"
    assert escalation.escalation_of == task.task_id
    assert (escalation.assignee, escalation.assignee_role, escalation.cc) == (
        "am-7",
        "owner",
        ["csm-3"],
    )
    assert escalation.priority == "high"
    assert escalation.due_at == at(hours=6)
    assert tasks(engine.advance(state, at(days=2).timestamp())) == []  # once only
    cancelled = tasks(engine.apply(state, ticket(at(days=3), "t-1", "resolved")))
    assert {(t.task_id, t.status) for t in cancelled} == {
        (task.task_id, "cancelled"),
        (escalation.task_id, "cancelled"),
    }


@pytest.mark.parametrize("status", ["acknowledged", "done"])
def test_acknowledged_or_done_task_does_not_escalate(tmp_path: Path, status: str) -> None:
    engine = make_engine(pack(tmp_path, CARE_RULE))
    state = CustomerState(CID)
    [task] = tasks(engine.apply(state, ticket(T0, "t-1")))
    engine.apply(state, task_update(at(hours=1), task.task_id, status))
    assert tasks(engine.advance(state, at(days=2).timestamp())) == []
    resolved = tasks(engine.apply(state, ticket(at(days=3), "t-1", "resolved")))
    # an acknowledged task is still open, so it is cancelled; a done one is not touched
    assert [t.status for t in resolved] == (["cancelled"] if status == "acknowledged" else [])


INHIBIT_PACK = (
    CARE_RULE
    + """
- id: on-fire
  when: open_tickets >= 2
  inhibits: [care]
  severity: critical
  summary: on fire
"""
)


def test_inhibitor_resolves_the_inhibited_alert_and_releases_it(tmp_path: Path) -> None:
    ruleset = pack(tmp_path, INHIBIT_PACK)
    assert [r.id for r in ruleset.rules] == ["on-fire", "care"]  # inhibitors first
    engine = make_engine(ruleset)
    state = CustomerState(CID)
    engine.apply(state, ticket(T0, "t-1"))
    result = engine.apply(state, ticket(at(hours=1), "t-2"))
    assert [(a.rule_id, a.status, a.resolution) for a in alerts(result)] == [
        ("on-fire", "firing", None),
        ("care", "resolved", "inhibited"),
    ]
    assert [t.status for t in tasks(result, "care")] == ["cancelled"]
    result = engine.apply(state, ticket(at(hours=2), "t-2", "resolved"))
    assert [(a.rule_id, a.status) for a in alerts(result)] == [
        ("on-fire", "resolved"),
        ("care", "firing"),
    ]


def test_late_event_is_evaluated_at_the_watermark(tmp_path: Path) -> None:
    engine = make_engine(pack(tmp_path, OPEN_TICKET_RULE))
    state = CustomerState(CID)
    result = engine.apply(state, ticket(T0, "t-1"), not_before=at(days=2).timestamp())
    [alert] = alerts(result)
    assert alert.fired_at == at(days=2)  # never in the past
    assert state.open_tickets == {"t-1": "high"}


def test_business_hours_due_date(tmp_path: Path) -> None:
    rule = CARE_RULE.replace("due: 2h, escalate_after: 4h", "due: 4h, business_hours: true")
    engine = make_engine(
        pack(tmp_path, rule), calendar=BusinessCalendar("Europe/Berlin", time(9), time(17))
    )
    friday_4pm = datetime(2024, 3, 1, 15, 0, tzinfo=UTC)  # 16:00 in Berlin, a Friday
    [task] = tasks(engine.apply(CustomerState(CID), ticket(friday_4pm, "t-1")))
    assert task.due_at == datetime(2024, 3, 4, 11, 0, tzinfo=UTC)  # Monday 12:00 Berlin


def test_fallback_team_spreads_customers_stably(tmp_path: Path) -> None:
    engine = make_engine(pack(tmp_path, CARE_RULE), fallback_team=("ann", "bob", "cy"))
    picks = {}
    for i in range(30):
        state = CustomerState(f"c-{i}")
        [task] = tasks(
            engine.apply(state, ticket(T0, "t-1").model_copy(update={"customer_id": f"c-{i}"}))
        )
        picks[f"c-{i}"] = task.assignee
        assert task.assignee_role == "fallback"
    assert set(picks.values()) == {"ann", "bob", "cy"}
    again = make_engine(pack(tmp_path, CARE_RULE), fallback_team=("ann", "bob", "cy"))
    state = CustomerState("c-7")
    [task] = tasks(again.apply(state, ticket(T0, "t-1").model_copy(update={"customer_id": "c-7"})))
    assert task.assignee == picks["c-7"]


def test_threshold_deadline_wakes_exactly_at_the_threshold(tmp_path: Path) -> None:
    only = pack(
        tmp_path,
        "- id: quiet\n  when: days_since_last_login >= 14\n  severity: low\n  summary: q\n",
    )
    engine = make_engine(only)
    state = CustomerState(CID)
    feed(engine, state, [login(T0)])
    assert engine.next_deadline(state) == at(days=14).timestamp()  # not each day before


def test_thresholds_of_several_rules_on_one_counter_wake_at_each_in_turn(tmp_path: Path) -> None:
    rules = "".join(
        f"- id: quiet-{d}\n  when: days_since_last_login >= {d}\n  severity: low\n  summary: q\n"
        for d in (30, 7, 14)
    )
    engine = make_engine(pack(tmp_path, rules))
    state = CustomerState(CID)
    feed(engine, state, [login(T0)])
    wakes = []
    while (due := engine.next_deadline(state)) is not None and due <= at(days=60).timestamp():
        wakes.append(due)
        engine.advance(state, due)
    assert wakes == [at(days=d).timestamp() for d in (7, 14, 30)]


RHYTHM = """\
- id: rhythm
  applies_to: order_count >= 3
  when: days_since_last_order >= 5 && double(days_since_last_order) > 3.0 * order_gap_median_days
  severity: high
  summary: "no order for {{ days_since_last_order }} days"
"""


def _regular_buyer(engine: Engine) -> CustomerState:
    """Three orders two days apart (median gap 2 days); the last at T0 + 4 days."""
    state = CustomerState(CID)
    feed(
        engine,
        state,
        [order(at(days=2 * i), f"o-{i}", "paid", event_id=f"o-{i}") for i in range(3)],
    )
    return state


def test_a_counter_compared_with_an_expression_wakes_on_the_day_the_rule_flips(
    tmp_path: Path,
) -> None:
    engine = make_engine(pack(tmp_path, RHYTHM))
    state = _regular_buyer(engine)
    # more than 3 × 2 days since the last order: 7 days after it, not each day before
    assert engine.next_deadline(state) == at(days=4 + 7).timestamp()
    fired = engine.advance(state, at(days=4 + 7).timestamp())
    assert [(a.rule_id, a.status) for a in alerts(fired)] == [("rhythm", "firing")]
    # firing, nothing can change it by time any more: the probe looks 120 days ahead, and
    # wakes the customer there only to look further
    assert engine.next_deadline(state) == at(days=4 + 7 + 120).timestamp()


def test_the_probe_gives_the_alerts_of_waking_every_day(tmp_path: Path) -> None:
    engine = make_engine(pack(tmp_path, RHYTHM))
    probed = _regular_buyer(engine)
    daily = _regular_buyer(engine)
    by_probe = Result()
    while (due := engine.next_deadline(probed)) is not None and due <= at(days=40).timestamp():
        by_probe.extend(engine.advance(probed, due))
    every_day = Result()
    for day in range(5, 41):
        every_day.extend(engine.advance(daily, at(days=day).timestamp()))
    assert summary(by_probe.outputs) == summary(every_day.outputs)
    assert alerts(by_probe)  # the rule did fire


PROBED_PACK = """\
- id: rhythm
  applies_to: order_count >= {count}
  when: >-
    days_since_last_order >= {low}
    && double(days_since_last_order) > {factor} * order_gap_median_days
  {resolve}
  severity: high
  cooldown: {cooldown}
  summary: "no order for {{{{ days_since_last_order }}}} days"
"""


@settings(max_examples=40, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=6),
    count=st.integers(min_value=1, max_value=4),
    low=st.integers(min_value=0, max_value=60),
    factor=st.sampled_from(["0.5", "1.0", "2.5", "3.0", "7.0"]),
    # one that excludes `when`, and one that can hold with it (no firing while it holds)
    resolve=st.sampled_from(
        [
            "",
            "resolve_when: days_since_last_order < {low}",
            "resolve_when: days_since_last_order < 10",
        ]
    ),
    cooldown=st.sampled_from(["0s", "5d"]),
)
def test_probing_gives_the_alerts_of_evaluating_every_six_hours(
    tmp_path_factory: pytest.TempPathFactory,
    gaps: list[int],
    count: int,
    low: int,
    factor: str,
    resolve: str,
    cooldown: str,
) -> None:
    text = PROBED_PACK.format(
        count=count, low=low, factor=factor, resolve=resolve.format(low=low), cooldown=cooldown
    )
    ruleset = pack(tmp_path_factory.mktemp("probe"), text)
    days = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    orders = [
        order(at(days=d, hours=i), f"o-{i}", "paid", event_id=f"o-{i}") for i, d in enumerate(days)
    ]
    end = at(days=days[-1] + 300).timestamp()

    def by_deadlines() -> list[tuple[Any, ...]]:
        engine, state, out = make_engine(ruleset), CustomerState(CID), Result()
        for event in orders:
            out.extend(engine.apply(state, event))
        while (due := engine.next_deadline(state)) is not None and due <= end:
            out.extend(engine.advance(state, due))
        out.extend(engine.advance(state, end))
        return summary(out.outputs)

    def with_logins() -> list[tuple[Any, ...]]:
        # a login every 6 hours evaluates the customer whatever its deadline says (logins
        # change nothing the rule reads): a flip the probe missed fires at a login instead
        engine, state, out = make_engine(ruleset), CustomerState(CID), Result()
        for event in orders:
            out.extend(engine.apply(state, event))
        t, n = orders[-1].occurred_at.timestamp() + 6 * 3600.0, 0
        while t <= end:
            when = datetime.fromtimestamp(t, UTC)
            out.extend(engine.apply(state, login(when, event_id=f"l-{n}")))
            t, n = t + 6 * 3600.0, n + 1
        out.extend(engine.advance(state, end))
        return [s for s in summary(out.outputs) if s[0] == "alert"]

    assert [s for s in by_deadlines() if s[0] == "alert"] == with_logins()


def test_a_rule_does_not_fire_while_its_resolve_when_holds(tmp_path: Path) -> None:
    overlapping = """\
- id: quiet
  when: days_since_last_login >= 2
  resolve_when: days_since_last_login < 5
  severity: low
  summary: q
"""
    engine = make_engine(pack(tmp_path, overlapping))
    state = CustomerState(CID)
    out = feed(engine, state, [login(T0)])
    for hours in range(6, 10 * 24, 6):  # evaluated every 6 hours: no fire-and-clear each time
        out.extend(engine.apply(state, ticket(at(hours=hours), f"t-{hours}", "closed")))
    # both hold from day 2 to day 4: it fires only once resolve_when stops holding, on day 5
    assert [(a.status, a.fired_at) for a in alerts(out)] == [("firing", at(days=5))]


def test_a_probed_rule_wakes_when_its_guard_on_the_counter_flips(tmp_path: Path) -> None:
    # the guard reads the counter too (so it is not a static guard): its flip is a wake-up
    guarded = RHYTHM.replace(
        "applies_to: order_count >= 3", "applies_to: days_since_last_order >= 9"
    )
    engine = make_engine(pack(tmp_path, guarded.replace("3.0 * order_gap_median_days", "0.0")))
    state = _regular_buyer(engine)
    # `when` holds from 5 days on, the guard from 9: the rule can fire 9 days after the order
    assert engine.next_deadline(state) == at(days=4 + 5).timestamp()
    engine.advance(state, at(days=4 + 5).timestamp())
    assert engine.next_deadline(state) == at(days=4 + 9).timestamp()
    fired = engine.advance(state, at(days=4 + 9).timestamp())
    assert [(a.rule_id, a.status) for a in alerts(fired)] == [("rhythm", "firing")]


def test_a_failing_guard_of_a_probed_rule_wakes_the_customer_the_next_day(tmp_path: Path) -> None:
    # the guard does not read the counter, so the probe runs it once, not per day; a failing
    # run still counts as a flip: the customer is evaluated (and the error reported) daily
    failing = RHYTHM.replace("order_count >= 3", "10 / (order_count - 3) >= 0")
    engine = make_engine(pack(tmp_path, failing))
    state = _regular_buyer(engine)
    assert engine.next_deadline(state) == at(days=4 + 1).timestamp()


def test_a_rule_with_two_time_inputs_is_not_probed(tmp_path: Path) -> None:
    both = RHYTHM.replace(
        "&& double(", "&& days_since_last_login + 1 > 0 && double("
    )  # login days: another time input, compared with arithmetic
    engine = make_engine(pack(tmp_path, both))
    state = _regular_buyer(engine)
    assert engine.next_deadline(state) == at(days=4 + 1).timestamp()  # the next day, as before


def test_core_pack_wakes_a_quiet_customer_rarely(core: RuleSet) -> None:
    engine = make_engine(core)
    state = CustomerState(CID)
    feed(engine, state, [account(T0 - timedelta(hours=1)), login(T0)])
    wakes = []
    while (due := engine.next_deadline(state)) is not None and due <= at(days=120).timestamp():
        wakes.append(due)
        engine.advance(state, due)
    # the login leaving the 7-day and the 35-day windows, inactivity at 14 d, dormant at 45 d
    # and 90 d (days since first seen, as there was never an order) — not 120 daily wake-ups
    assert at(days=14).timestamp() in wakes
    # and the built-in scoring: 90 days without a login (lifecycle stage churned)
    assert len(wakes) <= 9, [datetime.fromtimestamp(w, UTC) for w in wakes]


def test_event_evaluates_only_rules_whose_inputs_changed(core: RuleSet) -> None:
    engine = make_engine(core)
    state = CustomerState(CID)
    first = engine.apply(state, account(T0))
    assert first.evaluations == len(core.rules)  # a new customer: everything
    later = engine.apply(state, login(at(minutes=5)))
    readers = {r.id for r in core.rules if "days_since_last_login" in r.inputs}
    assert 0 < later.evaluations < len(core.rules)
    assert later.evaluations >= len(readers)


# -- property: dependency tracking never changes the outcome ------------------------------------
class _EvaluateAll(Engine):
    def _changed(self, *args: Any) -> frozenset[str] | None:
        return None


@st.composite
def rich_timelines(draw: st.DrawFn) -> list[InputEvent]:
    steps = draw(st.lists(st.integers(0, 9 * 86400), min_size=1, max_size=40))
    out: list[InputEvent] = [account(T0, event_id="acct", renewal_at=T0 + timedelta(days=60))]
    t = T0
    for i, gap in enumerate(steps):
        t += timedelta(seconds=gap)
        eid = f"r-{i}"
        kind = draw(st.sampled_from(["login", "login", "order", "ticket", "csat", "contact"]))
        if kind == "login":
            out.append(login(t, event_id=eid))
        elif kind == "order":
            out.append(order(t, eid, "paid", "120.00", event_id=eid))
        elif kind == "ticket":
            out.append(
                ticket(
                    t,
                    f"t-{draw(st.integers(0, 3))}",
                    draw(st.sampled_from(["opened", "resolved"])),
                    event_id=eid,
                )
            )
        elif kind == "csat":
            out.append(
                ticket(
                    t,
                    f"q-{i}",
                    "closed",
                    "question",
                    "low",
                    event_id=eid,
                    csat=draw(st.integers(1, 5)),
                    nps=draw(st.integers(0, 10)),
                )
            )
        else:
            out.append(
                contact(
                    t,
                    f"c-{draw(st.integers(0, 2))}",
                    draw(st.sampled_from(["added", "departed"])),
                    event_id=eid,
                )
            )
    return out


@settings(max_examples=60, deadline=None)
@given(events=rich_timelines())
def test_dependency_tracking_gives_the_same_outputs_as_evaluating_all(
    events: list[InputEvent],
) -> None:
    ruleset = load_rules([CORE_PACK])
    tracked, full = (
        make_engine(ruleset),
        _EvaluateAll(ruleset, EngineConfig(), wall_clock=WALL.timestamp),
    )
    s1, s2 = CustomerState(CID), CustomerState(CID)
    out1 = [o for e in events for o in tracked.apply(s1, e).outputs]
    out2 = [o for e in events for o in full.apply(s2, e).outputs]
    end = events[-1].occurred_at.timestamp() + 120 * DAY
    out1 += tracked.advance(s1, end).outputs
    out2 += full.advance(s2, end).outputs
    assert summary(out1) == summary(out2)
    assert s1.to_bytes() == s2.to_bytes()


# -- regressions found in review ---------------------------------------------------------------
def test_record_written_by_an_older_version_is_upgraded(core: RuleSet) -> None:
    engine = make_engine(core)
    state = CustomerState(CID)
    feed(engine, state, [account(T0), contact(at(hours=1), "c-1", "departed")])
    rec = state.alerts["key-contact-departed"]
    for key in ("tstat", "tat", "sev"):  # what records looked like before issue 3
        rec.pop(key)
    task_id = rec["task"]
    assert engine.apply(state, task_update(at(hours=2), task_id, "acknowledged")).errors == []
    assert rec["tstat"] == "ack"
    resolved = tasks(engine.advance(state, at(days=31).timestamp()), "key-contact-departed")
    assert [(t.task_id, t.status) for t in resolved] == [(task_id, "cancelled")]


def test_a_failing_time_free_guard_keeps_the_wake_ups(tmp_path: Path) -> None:
    rule = (
        "- id: r\n  applies_to: 100 / (open_tickets - 1) > 0\n"
        "  when: days_since_last_login >= 3\n  severity: low\n  summary: s\n"
    )
    engine = make_engine(pack(tmp_path, rule))
    state = CustomerState(CID)
    result = engine.apply(state, ticket(T0, "t-1"))  # one open ticket: division by zero
    assert [e.rule_id for e in result.errors] == ["r"]
    assert engine.next_deadline(state) == at(days=3).timestamp()


def test_a_late_event_gives_the_same_outputs_with_or_without_a_sweep(core: RuleSet) -> None:
    watermark = at(days=14, hours=1).timestamp()
    late = login(at(days=14, hours=-1), event_id="late")
    runs = []
    for sweep in (False, True):
        engine = make_engine(core)
        state = CustomerState(CID)
        out = feed(engine, state, [account(T0 - timedelta(hours=1)), login(T0)]).outputs
        if sweep:
            out += engine.advance(state, watermark).outputs
        out += engine.apply(state, late, not_before=watermark).outputs
        runs.append(summary(out))
    assert runs[0] == runs[1]


def test_snooze_already_over_refires_at_once(tmp_path: Path) -> None:
    engine = make_engine(pack(tmp_path, CARE_RULE))
    state = CustomerState(CID)
    [task] = tasks(engine.apply(state, ticket(T0, "t-1")))
    update = task_update(at(hours=1), task.task_id, "dismissed", snooze_until=at(minutes=30))
    result = engine.apply(state, update)
    assert [(a.status, a.resolution) for a in alerts(result)] == [
        ("resolved", "snoozed"),
        ("firing", None),
    ]


def test_escalate_after_zero_escalates_on_firing(tmp_path: Path) -> None:
    engine = make_engine(
        pack(tmp_path, CARE_RULE.replace("escalate_after: 4h", "escalate_after: 0h"))
    )
    result = engine.apply(CustomerState(CID), ticket(T0, "t-1"))
    assert [t.status for t in tasks(result)] == ["open", "escalated"]


def test_records_of_rules_removed_from_the_pack_are_forgotten(tmp_path: Path) -> None:
    state = CustomerState(CID)
    make_engine(pack(tmp_path, INHIBIT_PACK)).apply(state, ticket(T0, "t-1"))
    assert "care" in state.alerts
    engine = make_engine(pack(tmp_path, OPEN_TICKET_RULE, name="other.yaml"))
    result = engine.apply(state, ticket(at(hours=1), "t-2"))
    assert [rule for rule, _ in result.forgotten] == ["care"]
    assert "care" not in state.alerts and "care" not in state.last_fired


def test_alert_reading_rule_that_inhibits_is_settled_in_the_same_pass(tmp_path: Path) -> None:
    ruleset = pack(
        tmp_path,
        """\
        - id: critical
          when: open_critical_tickets > 0
          severity: critical
          summary: critical
        - id: detractor
          when: last_nps >= 0 && last_nps <= 6
          severity: medium
          summary: detractor
        - id: escalated
          when: open_high_alerts > 0
          inhibits: [detractor]
          severity: high
          summary: escalated
        """,
    )
    engine = make_engine(ruleset)
    state = CustomerState(CID)
    engine.apply(state, ticket(T0, "q-1", "closed", "question", "low", nps=3))
    assert state.alerts["detractor"]["s"] == "firing"
    engine.apply(state, ticket(at(hours=1), "t-1", severity="critical"))
    assert {r: a["s"] for r, a in state.alerts.items()} == {
        "critical": "firing",
        "escalated": "firing",
    }


def test_cleared_while_when_still_holds_stays_resolved_deterministically(tmp_path: Path) -> None:
    rule = (
        "- id: r\n  when: open_tickets > 0\n  resolve_when: tickets_30d >= 2\n"
        "  severity: low\n  summary: s\n"
    )
    engine = make_engine(pack(tmp_path, rule))
    state = CustomerState(CID)
    engine.apply(state, ticket(T0, "t-1"))
    result = engine.apply(state, ticket(at(hours=1), "t-2"))  # both conditions hold now
    assert [a.status for a in alerts(result)] == ["resolved"]
    assert alerts(engine.advance(state, at(days=5).timestamp())) == []
    # once resolve_when no longer holds (tickets age out of 30 days), it fires again
    [again] = alerts(engine.advance(state, at(days=31).timestamp()))
    assert again.status == "firing"


def test_inhibited_alert_fires_again_when_the_inhibitor_clears_despite_cooldown(
    tmp_path: Path,
) -> None:
    engine = make_engine(
        pack(tmp_path, INHIBIT_PACK.replace("severity: medium", "severity: medium\n  cooldown: 7d"))
    )
    state = CustomerState(CID)
    engine.apply(state, ticket(T0, "t-1"))
    engine.apply(state, ticket(at(hours=1), "t-2"))
    result = engine.apply(state, ticket(at(hours=2), "t-2", "resolved"))
    assert [(a.rule_id, a.status) for a in alerts(result)] == [
        ("on-fire", "resolved"),
        ("care", "firing"),
    ]


# -- batch entry point -------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    events=rich_timelines(),
    cuts=st.lists(st.integers(0, 40), max_size=6),
    lateness=st.sampled_from([0.0, 3600.0, 2 * DAY]),
    replays=st.lists(st.integers(0, 40), max_size=4),
)
def test_a_batch_is_apply_event_by_event(
    events: list[InputEvent], cuts: list[int], lateness: float, replays: list[int]
) -> None:
    for i in replays:  # an event read again is not applied again
        events = [*events[: i + 1], *events[i : i + 1], *events[i + 1 :]]
    timed: list[tuple[InputEvent, float]] = []
    newest = 0.0
    for event in events:  # each with the watermark before it
        timed.append((event, max(0.0, newest - lateness)))
        newest = max(newest, event.occurred_at.timestamp())
    ruleset = load_rules([CORE_PACK])
    one, many = make_engine(ruleset), make_engine(ruleset)
    s1, s2 = CustomerState(CID), CustomerState(CID)
    singles = [one.apply(s1, event, not_before) for event, not_before in timed]
    bounds = sorted({0, len(timed), *(c for c in cuts if c < len(timed))})
    spans = list(pairwise(bounds))
    states = {CID: s2}
    batches = [
        apply_batch(many, states, group_by_customer([(e, nb, "t") for e, nb in timed[a:b]]))
        for a, b in spans
    ]
    results = [r for batch in batches for r in batch.results.get(CID, [])]
    assert summary([o for r in singles for o in r.outputs]) == summary(
        [o for r in results for o in r.outputs]
    )
    assert [s.to_bytes() for r in singles for s in r.snapshots] == [
        s.to_bytes() for r in results for s in r.snapshots
    ]
    assert s1.to_bytes() == s2.to_bytes()
    assert one.next_deadline(s1) == many.next_deadline(s2)
    applied = [r.applied for r in singles]
    for (a, b), batch in zip(spans, batches, strict=True):
        assert bool(batch.applied) == any(applied[a:b])
