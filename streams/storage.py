"""How a customer's state is stored in the table: 8-byte next deadline, then the state.

The deadline prefix lets a worker rebuild its deadline index after a rebalance by reading
8 bytes per customer instead of decoding every state.
"""

from __future__ import annotations

import math
import struct

from streams.state import CustomerState

_PREFIX = struct.Struct(">d")


def encode_stored(state: CustomerState, deadline: float | None) -> bytes:
    """Table value for ``state`` with its next deadline (NaN when none)."""
    return _PREFIX.pack(math.nan if deadline is None else deadline) + state.to_bytes()


def stored_deadline(raw: bytes) -> float | None:
    """The deadline of a stored value, without decoding the state."""
    (deadline,) = _PREFIX.unpack_from(raw)
    return None if math.isnan(deadline) else deadline


def decode_stored(raw: bytes) -> CustomerState:
    """The state of a stored value."""
    return CustomerState.from_bytes(raw[_PREFIX.size :])
