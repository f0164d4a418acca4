"""The engine leaves no reference cycles behind: everything an evaluation allocates is freed
by reference counting, so the garbage collector has nothing to find.

A cycle per evaluation costs the worker and the backtest dearly: its objects live until a
collection, every collection then has them to scan, and the old generations grow with them.
Compiled with mypyc, nested functions that refer to each other share an environment object
that refers back to them, so a closure in the hot path is such a cycle (the scoring step had
one until 2026-12-07: 16 % of the CDNOW backtest). `make test-compiled` runs this on the
compiled core too.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import orjson
import pytest

from bench.rules_cost import FLUSH_DIRTY, START, run_engine
from rules.engine import Engine, EngineConfig
from rules.loader import load_rules
from schemas import InputEvent, decode_input
from streams.settings import BUILTIN_PACKS
from streams.sketch import CutPoints
from streams.synthetic import generate_events
from tests.factories import clv_model


def events(customers: int, count: int, seed: int) -> list[InputEvent]:
    """Synthetic traffic of every kind, decoded as the worker decodes it."""
    return [
        decode_input(r.topic_kind, orjson.dumps(r.value))
        for r in generate_events(customers, count, start=START, seed=seed)
    ]


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The collector off (cycles stay until gc.collect()), restored afterwards."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    yield
    if was_enabled:
        gc.enable()


@pytest.mark.usefixtures("collector_off")
@pytest.mark.parametrize(
    "config",
    [
        EngineConfig(clv_model=clv_model()),  # the worker's: snapshots, texts, tasks
        EngineConfig(snapshots=False, texts=False),  # the backtest's
    ],
    ids=["worker", "backtest"],
)
def test_evaluations_leave_no_cyclic_garbage(config: EngineConfig) -> None:
    engine = Engine(load_rules([BUILTIN_PACKS]), config, wall_clock=lambda: 0.0)
    cuts = CutPoints(
        recency=(10, 30, 60, 120),
        frequency=(1, 2, 3, 5),
        monetary=(100.0, 200.0, 400.0, 800.0),
        customers=1000,
        as_of=START.timestamp(),
    )
    engine.set_cut_points(cuts)
    run_engine(events(30, 300, seed=1), engine)  # first calls: caches, lazy imports
    # more customers than a flush takes: flushes, next deadlines and sweeps all run
    traffic = events(2 * FLUSH_DIRTY, 8 * FLUSH_DIRTY, seed=2)
    gc.collect()

    counts = run_engine(traffic, engine)  # as the worker drives it

    assert counts["outputs"] > 0 and counts["swept"] > 0  # the whole path ran
    assert gc.collect() == 0
