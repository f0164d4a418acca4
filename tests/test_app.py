"""The Faust app as configured: the worker class it runs with."""

from __future__ import annotations

import logging
from pathlib import Path

import faust

from streams.app import Worker, create_app
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
