"""One evaluation of one customer at one time: feature values, computed at most once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from rules.memo import MISS, Memo, Values, discard
from streams.features import FEATURES
from streams.state import CustomerState

CEL_ERRORS: Final = (RuntimeError, TypeError, ValueError, KeyError, ArithmeticError)
"""What a CEL program may raise on the values of one customer."""


class Evaluation(Values):
    """One evaluation of one customer at one time: lazily computed feature values."""

    # a plain class, not a dataclass: compiled, a dataclass's generated __init__ stays
    # interpreted, and one Evaluation is made per event and wake-up
    def __init__(
        self,
        state: CustomerState,
        at: float,
        alerts_touched: bool = False,
        timers: frozenset[str] = frozenset(),
    ) -> None:
        self.state = state
        self.at = at
        self.values: dict[str, Any] = {}
        self.alerts_changed = False  # in the current round
        # in this pass: one fired, resolved, was forgotten or upgraded
        self.alerts_touched = alerts_touched
        self.timers = timers  # rules whose lifecycle timer is due

    def value(self, name: str) -> Any:
        """The feature's value for the customer at this time."""
        found = self.values.get(name, MISS)
        if found is MISS:
            feature = FEATURES[name]
            if feature.derive is not None:  # from values this pass may already have
                names, derive = feature.derive
                found = derive(*[self.value(n) for n in names])  # native calls, not map's
            else:
                found = feature.compute(self.state, self.at)
            self.values[name] = found
        return found

    def forget(self, names: Iterable[str]) -> None:
        """Drop the named features' values computed so far (they are stale)."""
        discard(self.values, names)

    def pick(self, names: frozenset[str]) -> dict[str, Any]:
        """The named features' values, by name in sorted order."""
        return {n: self.value(n) for n in sorted(names)}


def holds_not(guard: Memo, one: Evaluation) -> bool:
    """True if the guard is surely false now (an error counts as "maybe")."""
    try:
        return guard.run(one) is not True
    except CEL_ERRORS:
        return False
