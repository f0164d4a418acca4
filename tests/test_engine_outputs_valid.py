"""Every output the engine builds without validation is valid.

The engine makes its alerts, tasks and tier notices from its own values and skips
pydantic's validation (``rules.results.built`` checks only that as many fields are given as
the model has), and its health snapshots are plain documents that orjson encodes
(``rules.results.HealthSnapshot``); this test runs troubled traffic with a CLV model, cut
points and a pack whose tiers move, and validates each output against its schema: the bytes
it encodes to must parse back, pass every check, and be the bytes pydantic writes for the
validated model (for a snapshot: its fields in the schema's order, floats and times written
alike). It runs on the compiled core
too (make test-compiled), where it found a keyword argument bound to the wrong parameter.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from pydantic import BaseModel

from rules.engine import Engine, EngineConfig, Result
from rules.loader import load_rules
from rules.results import HealthSnapshot
from schemas import AlertEvent, CustomerHealth, TaskEvent, encode
from streams.settings import BUILTIN_PACKS
from streams.state import CustomerState
from tests.factories import CID, T0, account, clv_model
from tests.test_engine_golden import CUTS, SCENARIOS, _ruleset, _stream

DAY = 86400.0


def _outputs(scenario_name: str, tmp_path: Path) -> list[BaseModel | HealthSnapshot]:
    """Everything the engine produced for the scenario's events, with daily sweeps."""
    scenario = next(s for s in SCENARIOS if s.name == scenario_name)
    engine = Engine(
        _ruleset(scenario.pack, tmp_path),
        EngineConfig(clv_model=clv_model(), snapshot_interval=scenario.snapshot_interval),
        wall_clock=lambda: 0.0,
    )
    engine.set_cut_points(CUTS[0])
    states: dict[str, CustomerState] = {}
    produced: list[BaseModel | HealthSnapshot] = []

    def keep(result: Result) -> None:
        produced.extend(result.outputs)
        produced.extend(result.snapshots)

    events = _stream(scenario)
    next_sweep = events[0].occurred_at.timestamp() + DAY
    for event in events:
        ts = event.occurred_at.timestamp()
        if ts >= next_sweep:  # the worker's sweeps: time-driven alerts, tasks, escalations
            for state in states.values():
                keep(engine.advance(state, next_sweep))
            next_sweep += DAY
        state = states.setdefault(event.customer_id, CustomerState(event.customer_id))
        keep(engine.apply(state, event))
    return produced


@pytest.mark.parametrize("scenario", ["builtin-troubled-clv-cuts", "trend-pack"])
def test_every_output_is_valid_against_its_schema(scenario: str, tmp_path: Path) -> None:
    produced = _outputs(scenario, tmp_path)
    kinds: Counter[str] = Counter()
    for made in produced:
        if isinstance(made, HealthSnapshot):
            raw = made.to_bytes()
            model: BaseModel = CustomerHealth.model_validate_json(raw)  # raises if invalid
        else:
            raw = encode(made)
            model = type(made).model_validate_json(raw)
        assert encode(model) == raw, f"{type(model).__name__} changed on a round trip"
        if isinstance(model, AlertEvent):
            kinds[f"alert {model.status}"] += 1
        elif isinstance(model, TaskEvent):
            kinds[f"task {model.status}"] += 1
        elif isinstance(model, CustomerHealth):
            kinds["snapshot with clv" if model.clv is not None else "snapshot"] += 1
    # the run must have exercised every kind of output the engine builds
    every = ("alert firing", "alert resolved", "alert notice")
    for kind in (*every, "task open", "task escalated", "task cancelled", "snapshot"):
        assert kinds[kind] > 0, f"no {kind} in {dict(kinds)}"
    assert kinds["snapshot with clv"] > 0, dict(kinds)


def test_a_snapshot_with_an_int_orjson_refuses_is_written_as_pydantic_writes_it() -> None:
    engine = Engine(load_rules([BUILTIN_PACKS]), EngineConfig(), wall_clock=lambda: 0.0)
    first = engine.apply(CustomerState(CID), account(T0))
    [made] = first.snapshots  # a customer's first evaluation sends one
    huge = HealthSnapshot(
        {**made.document, "features": {**made.document["features"], "revenue_365d": 2**70}}
    )
    raw = huge.to_bytes()  # orjson stops at 64 bits; the model writes any int
    assert b'"revenue_365d":1180591620717411303424' in raw
    assert raw == encode(huge.model())
