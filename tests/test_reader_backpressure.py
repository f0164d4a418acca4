"""How many records an input topic partition may buffer before its fetching pauses."""

from __future__ import annotations

from agents.reader import buffer_limit
from streams.settings import Settings


def test_small_events_are_held_back_by_the_record_limit() -> None:
    settings = Settings()
    assert buffer_limit(settings.max_buffered_records, settings.max_buffered_bytes, 200) == (
        settings.max_buffered_records
    )


def test_large_events_are_held_back_by_the_byte_limit() -> None:
    # events of 512 KiB: 16 MiB hold 32 of them, not 20,000 (10 GiB)
    assert buffer_limit(20_000, 16 * 1024 * 1024, 512 * 1024) == 32


def test_at_least_two_records_so_a_paused_partition_can_resume() -> None:
    assert buffer_limit(20_000, 1024 * 1024, 64 * 1024 * 1024) == 2
    assert buffer_limit(20_000, 1024 * 1024, 0) == 20_000
