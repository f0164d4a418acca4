"""The engine's configuration from the settings: the one mapping the worker and the offline
tools (backtest) share, so that both evaluate customers alike."""

from __future__ import annotations

from rules.calendar import BusinessCalendar
from rules.config import EngineConfig
from streams.clv import load_model
from streams.settings import Settings


def engine_config(settings: Settings) -> EngineConfig:
    """The engine's knobs from the settings (raises ValueError for a bad CLV model file)."""
    return EngineConfig(
        state=settings.state_config,
        fallback_assignee=settings.task_fallback_assignee,
        fallback_team=tuple(settings.task_fallback_team),
        calendar=BusinessCalendar(
            settings.business_timezone,
            *settings.business_hours_range,
            frozenset(settings.business_days),
        ),
        clv_model=load_model(settings.clv_model) if settings.clv_model else None,
        snapshot_interval=settings.snapshot_interval_s,
        snapshot_health_delta=settings.snapshot_health_delta,
        output_names=settings.output_names,
    )
