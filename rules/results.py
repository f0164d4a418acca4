"""What a call into the engine produces, and the deterministic ids and times in it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final, TypeVar, cast

import orjson
from pydantic import BaseModel

from rules.loader import CompiledRule
from schemas import AlertEvent, CustomerHealth, TaskEvent, encode

M = TypeVar("M", bound=BaseModel)
_set: Final = object.__setattr__
_new: Final = object.__new__

Output = AlertEvent | TaskEvent
"""What the engine asks the runtime to publish in order (snapshots travel beside them)."""


class HealthSnapshot:
    """A customer-health snapshot as the engine makes it: the wire document of a
    ``schemas.CustomerHealth``, ready to encode.

    Building seven pydantic models per snapshot and serialising them through pydantic cost
    about a seventh of the worker's CPU per event (docs/performance.md); the document is
    plain dicts and lists in the model's field order, so orjson writes the same bytes
    (tests/test_engine_outputs_valid.py checks that against the model).
    """

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    @property
    def customer_id(self) -> str:
        """The customer the snapshot is of."""
        return cast(str, self.document["customer_id"])

    @property
    def event(self) -> str:
        """ "snapshot", or "tier_changed" when it announces a tier change."""
        return cast(str, self.document["event"])

    @property
    def as_of(self) -> datetime:
        """The event time the snapshot shows the customer at."""
        return cast(datetime, self.document["as_of"])

    def to_bytes(self) -> bytes:
        """The snapshot's JSON bytes, as ``schemas.encode`` writes its model."""
        try:
            return orjson.dumps(self.document, option=orjson.OPT_UTC_Z)
        except orjson.JSONEncodeError:  # an int beyond 64 bits: pydantic writes those
            return encode(self.model())

    def model(self) -> CustomerHealth:
        """The snapshot as its validated schema model."""
        return CustomerHealth.model_validate(self.document)


@dataclass
class RuleError:
    """A rule that could not be evaluated for a customer (bad types at run time)."""

    rule_id: str
    customer_id: str
    message: str


class Result:
    """What one call into the engine produced."""

    # a plain class, not a dataclass: compiled, a dataclass's generated __init__ stays
    # interpreted, and one Result is made per evaluation
    def __init__(self, applied: bool = True) -> None:
        self.applied = applied
        self.outputs: list[Output] = []  # alerts and tasks, in order
        self.snapshots: list[HealthSnapshot] = []
        self.errors: list[RuleError] = []
        self.evaluations = 0
        self.eval_seconds = 0.0
        # (rule id, alert id) of lifecycle records of rules no longer in the pack, dropped
        self.forgotten: list[tuple[str, str | None]] = []

    def extend(self, other: Result) -> None:
        """Append another result's outputs, snapshots and errors."""
        self.outputs.extend(other.outputs)
        self.snapshots.extend(other.snapshots)
        self.errors.extend(other.errors)
        self.forgotten.extend(other.forgotten)
        self.evaluations += other.evaluations
        self.eval_seconds += other.eval_seconds


def built(_model: type[M], /, **values: Any) -> M:
    """An output model made of the engine's own values, not validated.

    pydantic's ``model_construct`` without its field-by-field lookup of aliases and
    defaults, for calls that give every field (checked by count; where it fails, that is
    called instead), compiled with the core: a classmethod of the interpreted schema cost
    about 1.5 us per model, 7 models per health snapshot, a seventh of the engine's
    instructions in the worker mix. tests/test_engine_outputs_valid.py validates every kind
    of output against its schema (so a misspelt field fails there), and
    tests/test_engine_golden.py pins their bytes. ``_model`` has a name no field can have
    (a leading underscore): compiled, a keyword argument named like a positional-only
    parameter binds to it (`Clv` has a field ``model``).
    """
    if len(values) != _field_count(_model):
        return _model.model_construct(**values)
    out = _new(_model)
    _set(out, "__dict__", values)
    _set(out, "__pydantic_fields_set__", set(values))
    _set(out, "__pydantic_extra__", None)  # output models forbid extra fields
    _set(out, "__pydantic_private__", None)  # and have no private ones
    return out


@lru_cache(maxsize=64)
def _field_count(model: type[BaseModel]) -> int:
    """How many fields the model has (a class attribute read through the type's MRO)."""
    return len(model.__pydantic_fields__)


def timestamp(epoch: float) -> datetime:
    """The aware UTC datetime of an epoch time."""
    return datetime.fromtimestamp(epoch, UTC)


def digest(*parts: str) -> str:
    """A short stable hash of the parts (for ids and spreading work over a team)."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=10).hexdigest()


def alert_id_for(customer_id: str, rule: CompiledRule, fired_at: float) -> str:
    """Deterministic alert id from customer, rule, labels and firing start."""
    labels = ",".join(f"{k}={v}" for k, v in sorted(rule.rule.labels.items()))
    return "al-" + digest(customer_id, rule.id, labels, f"{fired_at:.3f}")
