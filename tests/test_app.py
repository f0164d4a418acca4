"""The Faust app as configured: the worker class it runs with."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import faust
import pytest

from agents.ingest import make_engine
from streams.app import Worker, create_app
from streams.gc_tuning import GC_GEN1_THRESHOLD, GC_GEN2_THRESHOLD, tune_gc
from streams.settings import Settings


def _worker(tmp_path: Path, worker_class: type[faust.Worker] | None = None) -> faust.Worker:
    app = create_app(Settings(data_dir=tmp_path, broker="kafka://127.0.0.1:9"))
    if worker_class is not None:
        return worker_class(app, loglevel="warn")
    return app.Worker(loglevel="warn")


def _root_stand_in() -> logging.Logger:
    logger = logging.Logger("root-stand-in", logging.WARNING)
    logger.addHandler(logging.StreamHandler())
    return logger


def test_the_app_runs_churnguards_worker(tmp_path: Path) -> None:
    assert isinstance(_worker(tmp_path), Worker)


def test_worker_keeps_the_root_logger_at_the_cli_level(tmp_path: Path) -> None:
    """At ``-l warn`` debug records must not be built (Faust's spinner would set DEBUG)."""
    logger = _root_stand_in()
    _worker(tmp_path).on_setup_root_logger(logger, logging.WARNING)
    assert logger.level == logging.WARNING
    assert not logger.isEnabledFor(logging.DEBUG)
    assert len(logger.handlers) == 1


def test_faust_worker_would_lower_it(tmp_path: Path) -> None:
    """What the override prevents (fails if a Faust release stops doing it)."""
    logger = _root_stand_in()
    _worker(tmp_path, faust.Worker).on_setup_root_logger(logger, logging.WARNING)
    assert logger.isEnabledFor(logging.DEBUG)


@pytest.fixture
def gc_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("gc_restored")
def test_tune_gc_freezes_start_up_objects_and_collects_less_often() -> None:
    tune_gc(50_000)
    assert gc.get_threshold() == (50_000, GC_GEN1_THRESHOLD, GC_GEN2_THRESHOLD)
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("gc_restored")
def test_tune_gc_zero_leaves_the_collector_alone() -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    tune_gc(0)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen


@pytest.mark.usefixtures("gc_restored")
def test_started_worker_tunes_gc_from_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, broker="kafka://127.0.0.1:9", gc_gen0_threshold=12_345)
    worker = create_app(settings).Worker(loglevel="warn")
    asyncio.run(worker.on_startup_finished())
    assert gc.get_threshold()[0] == 12_345


def test_worker_and_offline_tools_keep_state_by_the_same_settings() -> None:
    settings = Settings(horizon_days=150, recent_event_ids=64, currency_rates={"SEK": 0.09})
    config = settings.state_config
    assert (config.horizon_days, config.recent_event_ids) == (150, 64)
    assert config.currency_rates == {"SEK": 0.09}
    assert make_engine(settings).config.state == config


def test_standby_replicas_reach_faust(tmp_path: Path) -> None:
    """One warm standby copy of each table partition by default: a takeover reads the tail."""
    app = create_app(Settings(data_dir=tmp_path, broker="kafka://127.0.0.1:9"))
    assert app.conf.table_standby_replicas == 1
    app = create_app(Settings(data_dir=tmp_path, broker="kafka://127.0.0.1:9", standby_replicas=0))
    assert app.conf.table_standby_replicas == 0


def test_exactly_once_is_refused_with_the_reason(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, processing_guarantee="exactly_once")
    with pytest.raises(ValueError, match="not supported yet") as info:
        create_app(settings)
    assert "at_least_once" in str(info.value)


def test_worker_with_exactly_once_stops_at_start_up(tmp_path: Path) -> None:
    """The real command: exit code 2 and one clear line, before any broker is contacted."""
    env = {
        **os.environ,
        "CHURNGUARD_PROCESSING_GUARANTEE": "exactly_once",
        "CHURNGUARD_BROKER": "kafka://127.0.0.1:9",
        "CHURNGUARD_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "agents", "worker"], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 2
    assert b"exactly_once is not supported yet" in done.stderr
    assert not any(tmp_path.iterdir())  # nothing opened
