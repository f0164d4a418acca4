"""The engine's knobs beyond state keeping."""

from __future__ import annotations

from dataclasses import dataclass, field

from rules.calendar import BusinessCalendar
from streams.clv import ClvModel
from streams.state import StateConfig


@dataclass(frozen=True)
class EngineConfig:
    """Knobs of the engine beyond state keeping."""

    state: StateConfig = field(default_factory=StateConfig)
    fallback_assignee: str = "cs-queue"
    fallback_team: tuple[str, ...] = ()
    calendar: BusinessCalendar = field(default_factory=BusinessCalendar)
    # memoised CEL results and next change times (0: no cache of next change times, CEL
    # results kept for the last inputs only); results are the same whatever the size
    memo_size: int = 4096
    clv_model: ClvModel | None = None
    # customer-health snapshots: at most one per customer per interval (a tier change goes
    # at once); a health move below ``snapshot_health_delta`` points alone is not material
    snapshot_interval: float = 3600.0
    snapshot_health_delta: int = 5
    # False: ids instead of account and contact names in every output (rules/redaction.py)
    output_names: bool = True
    # False: no customer-health snapshots, and no wake-ups only they need (a backtest reads
    # alerts and scores, not snapshots)
    snapshots: bool = True
    # False: alerts carry no rendered texts, evidence or tier and no task events are built;
    # alert ids and times, task ids and lifecycle records are as usual (a backtest reads
    # alert ids and times only)
    texts: bool = True
