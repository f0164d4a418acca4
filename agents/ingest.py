"""Wiring into the Faust app: the input reader, the partition anchor, timers, rebalance hooks."""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.types import StreamT

from agents.engine_config import engine_config
from agents.health import WorkerProbe
from agents.log_limits import limit_client_logs
from agents.metrics import Metrics
from agents.reader import InputReader
from agents.rfm_population import read_rfm_summaries
from agents.runtime import Pipeline
from agents.views import register_views
from rules.engine import Engine
from rules.loader import RuleSet, load_rules
from streams.app import App, Topics
from streams.clock import Clock, WallClock, WatermarkClock
from streams.settings import Settings

log = logging.getLogger("churnguard.agents")


def make_clock(settings: Settings) -> Clock:
    """The sweep clock chosen by ``CHURNGUARD_CLOCK``."""
    if settings.clock == "event":
        return WatermarkClock(settings.allowed_lateness_s, settings.watermark_idle_s)
    return WallClock()


def make_engine(settings: Settings) -> Engine:
    """Load the configured rule packs (raises RulePackError) and the CLV model (ValueError),
    and build the engine."""
    rules = load_rules(settings.rule_packs, default_scoring=settings.scoring_enabled)
    if not settings.scoring_enabled:
        rules = RuleSet(rules.rules, rules.fingerprint, scoring=None)
    return Engine(rules, engine_config(settings))


def register(app: faust.App, settings: Settings, metrics: Metrics) -> Pipeline:
    """Attach churnguard's input reader, partition anchor, timers and rebalance hooks."""
    topics: Topics = app.churnguard_topics  # type: ignore[attr-defined]
    limit_client_logs()  # an unreachable broker: one line per message per 30 s, not 150/s
    pipeline = Pipeline(
        app=app,
        settings=settings,
        topics=topics,
        table=app.churnguard_table,  # type: ignore[attr-defined]
        engine=make_engine(settings),
        clock=make_clock(settings),
        metrics=metrics,
    )
    reader = InputReader(app, settings, pipeline)
    if isinstance(app, App):  # a graceful stop flushes and commits before Faust stops
        app.before_stop.append(reader.drain)

    async def anchor(stream: StreamT[Any]) -> None:
        # Faust's group assigns churnguard.ticks with the table's changelog: the partitions of
        # this topic are the partition numbers this worker owns. Nothing needs to be read.
        async for _ in stream:
            pass

    app.agent(topics.ticks, name="churnguard.partitions")(anchor)

    @app.task
    async def _read_inputs() -> None:
        try:
            await reader.run()
        except Exception as exc:  # cancellation is not an Exception: a stop passes through
            log.critical("input_reader_failed error=%r action=stop_worker", exc, exc_info=True)
            await app.crash(exc)

    async def refresh_rfm() -> None:
        try:
            await pipeline.publish_rfm()
        except Exception:  # a summary is retried at the next refresh; never stop the worker
            log.exception("rfm_publish_failed action=retry_next_refresh")

    app.timer(settings.rfm_refresh_s, name="churnguard.rfm")(refresh_rfm)

    @app.task
    async def _read_rfm_summaries() -> None:
        await read_rfm_summaries(settings, pipeline.rfm_summaries)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        await reader.on_revoked()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def _recovered(sender: Any, **kwargs: Any) -> None:
        await reader.on_rebalance_complete()

    @app.task
    async def _announce() -> None:
        log.info(
            "churnguard started rules=%d partitions=%d clock=%s store=%s",
            len(pipeline.engine.rules.rules),
            settings.partitions,
            settings.clock,
            settings.store,
        )

    probe = WorkerProbe(app, reader)
    metrics.worker_state.source = probe
    register_views(app, pipeline, probe)
    return pipeline
