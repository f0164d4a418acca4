"""One evaluation of one customer at one time: feature values, computed at most once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rules.memo import MISS, Memo
from streams.features import FEATURES
from streams.state import CustomerState

CEL_ERRORS = (RuntimeError, TypeError, ValueError, KeyError, ArithmeticError)
"""What a CEL program may raise on the values of one customer."""


@dataclass
class Evaluation:
    """One evaluation of one customer at one time: lazily computed feature values."""

    state: CustomerState
    at: float
    values: dict[str, Any] = field(default_factory=dict)
    alerts_changed: bool = False  # in the current round
    alerts_touched: bool = False  # in this pass: one fired, resolved, was forgotten or upgraded
    timers: frozenset[str] = frozenset()  # rules whose lifecycle timer is due

    def value(self, name: str) -> Any:
        """The feature's value for the customer at this time."""
        found = self.values.get(name, MISS)
        if found is MISS:
            feature = FEATURES[name]
            if feature.derive is not None:  # from values this pass may already have
                names, derive = feature.derive
                found = derive(*map(self.value, names))
            else:
                found = feature.compute(self.state, self.at)
            self.values[name] = found
        return found

    def pick(self, names: frozenset[str]) -> dict[str, Any]:
        """The named features' values, by name in sorted order."""
        return {n: self.value(n) for n in sorted(names)}


def holds_not(guard: Memo, one: Evaluation) -> bool:
    """True if the guard is surely false now (an error counts as "maybe")."""
    try:
        return guard.run(one.value) is not True
    except CEL_ERRORS:
        return False
