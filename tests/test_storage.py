"""The table value layout (streams.storage): deadline, rules fingerprint, state."""

from __future__ import annotations

import math
import struct

import pytest

from streams.state import CustomerState
from streams.storage import decode_stored, encode_stored, stored_deadline, stored_fingerprint

FP = b"\x01\x02\x03\x04\x05\x06\x07\x08"


def test_round_trip_with_deadline_and_fingerprint() -> None:
    state = CustomerState("c-1", last_login_at=1000.0)
    raw = encode_stored(state, 1234.5, FP)
    assert stored_deadline(raw) == 1234.5
    assert stored_fingerprint(raw) == FP
    assert decode_stored(raw).to_bytes() == state.to_bytes()
    assert stored_deadline(encode_stored(state, None, FP)) is None


def test_values_written_before_the_fingerprint_still_read() -> None:
    state = CustomerState("c-1", last_login_at=1000.0)
    legacy = struct.pack(">d", math.nan) + state.to_bytes()
    assert stored_deadline(legacy) is None
    assert stored_fingerprint(legacy) is None  # unknown rules: the deadline is recomputed
    assert decode_stored(legacy).customer_id == "c-1"


def test_fingerprint_must_have_eight_bytes() -> None:
    with pytest.raises(ValueError, match="8 bytes"):
        encode_stored(CustomerState("c-1"), None, b"short")
