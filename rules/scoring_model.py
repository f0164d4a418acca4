"""The scoring format: pydantic models of the tiers, health score and lifecycle stages in YAML.

They live in a pack file beside the rules (see docs/scoring.md); every condition and value is
CEL over the feature catalogue, like a rule.
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rules.model import RULE_ID

Missing = Literal["exclude"] | int


class Tier(BaseModel):
    """A value tier; the first whose ``when`` holds wins, the last one is the fallback."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=RULE_ID)
    description: str = ""
    when: str | None = Field(None, description="CEL; omitted only on the last (fallback) tier")


class Stage(BaseModel):
    """A lifecycle stage; the first whose ``when`` holds wins, the last one is the fallback."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=RULE_ID)
    description: str = ""
    when: str | None = Field(None, description="CEL; omitted only on the last (fallback) stage")


class GridStep(BaseModel):
    """Points for values below ``below`` (and at or above the step before); no ``below``: the
    rest."""

    model_config = ConfigDict(extra="forbid")

    below: float | None = Field(None, allow_inf_nan=False)
    points: int = Field(ge=0, le=100)


class Factor(BaseModel):
    """One input of the health score: a CEL value mapped to 0-100 points by a grid."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=RULE_ID)
    description: str = ""
    value: str = Field(min_length=1, description="CEL expression giving a number")
    weight: int = Field(ge=0, le=100)
    grid: list[GridStep] = Field(min_length=1)
    missing_when: str | None = Field(None, description="CEL: the factor has no data")
    missing: Missing | None = Field(None, description="default: the health section's `missing`")

    @model_validator(mode="after")
    def _grid_ascending(self) -> Factor:
        bounds = [s.below for s in self.grid]
        if bounds[-1] is not None:
            raise ValueError("grid: the last step takes no `below` (it covers the rest)")
        inner = bounds[:-1]
        if any(b is None for b in inner):
            raise ValueError("grid: only the last step may omit `below`")
        if any(a >= b for a, b in itertools.pairwise(inner)):  # type: ignore[operator]
            raise ValueError("grid: `below` values must rise from step to step")
        return self


class Profile(BaseModel):
    """Other factor weights for the customers ``applies_to`` selects (a segment, a stage)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=RULE_ID)
    applies_to: str = Field(min_length=1)
    weights: dict[str, int]


class Health(BaseModel):
    """The health score: factors with weights summing to 100, profiles, missing-data policy."""

    model_config = ConfigDict(extra="forbid")

    factors: list[Factor] = Field(min_length=1)
    profiles: list[Profile] = Field(default_factory=list)
    missing: Missing = Field(
        "exclude",
        description="a factor without data: `exclude` (the others' weights scale up to 100) "
        "or fixed points 0-100",
    )
    no_data_score: int = Field(50, ge=0, le=100, description="score when no factor has data")
    trend_days: int = Field(7, ge=1, le=90)


class Scoring(BaseModel):
    """Tiers, at-risk flag, health and lifecycle stages of one pack file."""

    model_config = ConfigDict(extra="forbid")

    tiers: list[Tier] = Field(min_length=1)
    at_risk: str = Field("open_high_alerts > 0", description="CEL: the at-risk flag")
    health: Health
    lifecycle: list[Stage] = Field(min_length=1)
