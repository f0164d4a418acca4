"""How a customer's state is stored in the table: next deadline, rules fingerprint, state.

Layout: 8-byte next deadline (big-endian double, NaN for none), 8-byte fingerprint of the
rule packs that computed it, then the state JSON. The prefix lets a worker rebuild its
deadline index after a rebalance by reading 16 bytes per customer instead of decoding every
state; the fingerprint tells when the rules changed since, so the deadline must be
recomputed. Values written before the fingerprint existed (the JSON starts at byte 8) are
read too and count as written by other rules.
"""

from __future__ import annotations

import math
import struct

from streams.state import CustomerState

_DEADLINE = struct.Struct(">d")
FINGERPRINT_BYTES = 8
_STATE_AT = _DEADLINE.size + FINGERPRINT_BYTES


def encode_stored(state: CustomerState, deadline: float | None, fingerprint: bytes) -> bytes:
    """Table value for ``state`` with its next deadline and the rules' 8-byte fingerprint."""
    if len(fingerprint) != FINGERPRINT_BYTES:
        raise ValueError(f"fingerprint must be {FINGERPRINT_BYTES} bytes")
    deadline_raw = _DEADLINE.pack(math.nan if deadline is None else deadline)
    return deadline_raw + fingerprint + state.to_bytes()


def _legacy(raw: bytes) -> bool:
    return raw[_DEADLINE.size : _DEADLINE.size + 1] == b"{"


def stored_deadline(raw: bytes) -> float | None:
    """The deadline of a stored value, without decoding the state."""
    (deadline,) = _DEADLINE.unpack_from(raw)
    return None if math.isnan(deadline) else deadline


def stored_fingerprint(raw: bytes) -> bytes | None:
    """The fingerprint of the rules that computed the stored deadline (None: unknown)."""
    return None if _legacy(raw) else raw[_DEADLINE.size : _STATE_AT]


def decode_stored(raw: bytes) -> CustomerState:
    """The state of a stored value."""
    return CustomerState.from_bytes(raw[_DEADLINE.size if _legacy(raw) else _STATE_AT :])
