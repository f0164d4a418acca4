"""The event-time watermark (streams.clock.WatermarkClock), with a manual wall clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.clock import WatermarkClock


class Wall:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_watermark_is_the_slowest_active_source_minus_lateness() -> None:
    wall = Wall()
    clock = WatermarkClock(allowed_lateness_s=5, idle_s=10, wall=wall)
    assert clock.now(0) is None
    clock.observe(0, 1000.0, "crm.logins")
    clock.observe(0, 400.0, "crm.tickets")  # tickets are read behind logins
    assert clock.now(0) == 395.0
    clock.observe(0, 900.0, "crm.tickets")
    assert clock.now(0) == 895.0
    assert clock.now(1) is None  # partitions are separate


def test_an_idle_source_stops_holding_the_watermark_back() -> None:
    wall = Wall()
    clock = WatermarkClock(allowed_lateness_s=0, idle_s=10, wall=wall)
    clock.observe(0, 100.0, "crm.accounts")  # read once at start, then quiet
    clock.observe(0, 500.0, "crm.logins")
    assert clock.now(0) == 100.0
    wall.now = 11.0
    clock.observe(0, 800.0, "crm.logins")
    assert clock.now(0) == 800.0


def test_the_watermark_never_goes_backwards_and_forget_resets_it() -> None:
    wall = Wall()
    clock = WatermarkClock(allowed_lateness_s=0, idle_s=10, wall=wall)
    clock.observe(0, 500.0, "a")
    assert clock.now(0) == 500.0
    clock.observe(0, 200.0, "b")  # a new, slower source appears
    assert clock.now(0) == 500.0
    clock.forget(0)
    assert clock.now(0) is None


SOURCES = ("crm.logins", "crm.orders", "crm.accounts")


@given(
    batches=st.lists(
        st.tuples(
            st.floats(0, 30),  # wall time when the batch is read (seconds since the last)
            st.lists(
                st.tuples(st.integers(0, 2000).map(float), st.sampled_from(SOURCES)),
                max_size=12,
            ),
        ),
        max_size=6,
    )
)
def test_observe_all_gives_the_watermarks_of_now_then_observe_per_event(
    batches: list[tuple[float, list[tuple[float, str]]]],
) -> None:
    wall = Wall()
    one, many = (WatermarkClock(allowed_lateness_s=5, idle_s=10, wall=wall) for _ in "ab")
    for elapsed, events in batches:
        wall.now += elapsed
        expected = []
        for event_time, source in events:
            expected.append(one.now(0))
            one.observe(0, event_time, source)
        assert many.observe_all(0, events) == expected
        assert many.now(0) == one.now(0)
