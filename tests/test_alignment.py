"""Event-time alignment of a partition's input topics (streams/alignment.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.alignment import UNTIMED, Aligner


def _aligner(*names: str, idle: float = 3.0) -> Aligner[str]:
    aligner: Aligner[str] = Aligner(idle)
    for name in names:
        aligner.source(name, now=0.0)
    return aligner


def test_takes_the_lowest_event_time_across_topics() -> None:
    a = _aligner("logins", "orders")
    a.add("logins", [(1.0, "l1"), (5.0, "l5")])
    a.add("orders", [(3.0, "o3"), (4.0, "o4")])
    a.set_caught_up("logins", True)
    a.set_caught_up("orders", True)
    assert a.drain(now=0.0) == ["l1", "o3", "o4", "l5"]


def test_an_empty_topic_behind_the_broker_holds_the_partition_back() -> None:
    a = _aligner("logins", "orders", idle=3.0)
    a.add("orders", [(100.0, "o")])
    a.set_caught_up("orders", True)
    a.set_caught_up("logins", False)  # the broker has logins not fetched yet
    assert a.drain(now=1.0) == []
    assert a.waiting_on(now=1.0) == ["logins"]
    a.add("logins", [(50.0, "l")])
    a.set_caught_up("logins", True)
    assert a.drain(now=1.5) == ["l", "o"]


def test_a_caught_up_topic_holds_nothing_back() -> None:
    a = _aligner("logins", "orders")
    a.add("orders", [(100.0, "o")])
    a.set_caught_up("orders", False)  # more orders on the broker, but one is buffered
    a.set_caught_up("logins", True)
    assert a.drain(now=0.0) == ["o"]
    assert a.drain(now=0.0) == []  # now the orders topic is empty and behind


def test_a_topic_waited_on_for_max_idle_stops_holding_back() -> None:
    a = _aligner("logins", "orders", idle=3.0)
    a.add("orders", [(100.0, "o")])
    a.set_caught_up("orders", True)
    a.set_caught_up("logins", False)
    assert a.drain(now=2.9) == []
    assert a.drain(now=3.0) == ["o"]
    assert a.waiting_on(now=3.0) == []
    a.add("logins", [(50.0, "late")])  # arrives after all: taken, late
    assert a.drain(now=3.1) == ["late"]
    # empty again and still behind: the wait starts anew
    assert a.drain(now=3.2) == []
    assert a.drain(now=6.2) == []
    a.add("orders", [(120.0, "o2")])
    assert a.drain(now=6.21) == ["o2"]


def test_order_within_a_topic_is_kept_and_untimed_records_go_first_at_the_head() -> None:
    a = _aligner("tickets", "logins")
    a.add("tickets", [(9.0, "t9"), (UNTIMED, "bad"), (2.0, "t2")])
    a.add("logins", [(1.0, "l1"), (3.0, "l3")])
    for name in ("tickets", "logins"):
        a.set_caught_up(name, True)
    assert a.drain(now=0.0) == ["l1", "l3", "t9", "bad", "t2"]
    assert a.is_idle()


def test_drain_stops_at_the_limit_and_resumes() -> None:
    a = _aligner("logins")
    a.add("logins", [(float(i), str(i)) for i in range(10)])
    a.set_caught_up("logins", True)
    assert a.drain(now=0.0, limit=4) == ["0", "1", "2", "3"]
    assert a.head("logins") == "4"
    assert a.drain(now=0.0) == [str(i) for i in range(4, 10)]


@settings(max_examples=200, deadline=None)
@given(
    topics=st.lists(
        st.lists(st.floats(0, 1e6, allow_nan=False), max_size=30).map(sorted),
        min_size=1,
        max_size=5,
    ),
    data=st.data(),
)
def test_records_arriving_in_any_chunks_come_out_in_event_time_order(
    topics: list[list[float]], data: st.DataObject
) -> None:
    """Each topic is time-ordered; whatever chunks the fetches bring, nothing is taken before
    an older record of another topic (no idle expiry: time stands still)."""
    names = [f"t{i}" for i in range(len(topics))]
    a = _aligner(*names, idle=3.0)
    sent = dict.fromkeys(names, 0)
    out: list[tuple[float, str]] = []
    while any(sent[n] < len(t) for n, t in zip(names, topics, strict=True)):
        name = data.draw(st.sampled_from(names))
        times = topics[names.index(name)]
        k = data.draw(st.integers(min(1, len(times) - sent[name]), len(times) - sent[name]))
        a.add(name, [(t, f"{name}:{t}") for t in times[sent[name] : sent[name] + k]])
        sent[name] += k
        for n, t in zip(names, topics, strict=True):
            a.set_caught_up(n, sent[n] == len(t))
        out += [(float(x.split(":")[1]), x) for x in a.drain(now=0.0)]
    out += [(float(x.split(":")[1]), x) for x in a.drain(now=0.0)]
    assert [t for t, _ in out] == sorted(t for times in topics for t in times)


def test_a_wait_that_runs_out_is_reported_once_per_empty_spell() -> None:
    a = _aligner("logins", "orders", idle=3.0)
    a.add("orders", [(100.0, "o1"), (101.0, "o2")])
    a.set_caught_up("orders", True)
    a.set_caught_up("logins", False)
    assert a.drain(now=1.0) == [] and a.gave_up == []
    assert a.drain(now=3.0, limit=1) == ["o1"]
    assert a.drain(now=4.0) == ["o2"]
    assert a.gave_up == ["logins"]
    a.add("logins", [(90.0, "late")])
    assert a.drain(now=4.5) == ["late"]
    assert a.drain(now=7.5) == []  # empty again: a new wait, and a new report when it ends
    a.add("orders", [(102.0, "o3")])
    assert a.drain(now=7.6) == ["o3"]
    assert a.gave_up == ["logins", "logins"]


def _one_at_a_time(queues: list[list[tuple[float, str]]]) -> list[str]:
    """The definition: always the lowest head; ties go to the topic registered first."""
    queues = [list(q) for q in queues]
    out = []
    while any(queues):
        best = min((q[0][0], i) for i, q in enumerate(queues) if q)[1]
        out.append(queues[best].pop(0)[1])
    return out


@settings(max_examples=300, deadline=None)
@given(
    topics=st.lists(
        st.lists(st.sampled_from([float("-inf"), 1.0, 2.0, 3.0, 5.0, 8.0]), max_size=12),
        min_size=1,
        max_size=4,
    ),
    limit=st.integers(1, 7),
)
def test_runs_taken_in_bulk_match_taking_one_record_at_a_time(
    topics: list[list[float]], limit: int
) -> None:
    """Unsorted topics with ties and untimed records: the same order as the definition,
    whatever the limit per drain."""
    names = [f"t{i}" for i in range(len(topics))]
    queues = [
        [(t, f"{n}#{j}") for j, t in enumerate(ts)] for n, ts in zip(names, topics, strict=True)
    ]
    a = _aligner(*names)
    for name, queue in zip(names, queues, strict=True):
        a.add(name, queue)
        a.set_caught_up(name, True)
    out: list[str] = []
    while batch := a.drain(now=0.0, limit=limit):
        assert len(batch) <= limit
        out += batch
    assert out == _one_at_a_time(queues)
