"""The RFM quantile sketch (streams.sketch): wire format, merge accuracy, cut points, scores."""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import orjson
import pytest
from ddsketch import DDSketch
from ddsketch.pb.proto import DDSketchProto
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.sketch import (
    ALL_PARTITIONS,
    QUANTILES,
    RELATIVE_ACCURACY,
    CutPoints,
    RfmSketch,
    cut_points,
    merge_all,
    next_score_change,
    score,
)

Floats = npt.NDArray[np.float64]
Population = Callable[[int, int], tuple[Floats, Floats, Floats]]
PARTITIONS = 8
AS_OF = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def mixed_population(n: int, seed: int) -> tuple[Floats, Floats, Floats]:
    """Skewed like real order data: 60 % never reordered (frequency 0, monetary 0), 25 %
    ordered today (recency 0), whole days elsewhere, lognormal order values."""
    rng = np.random.default_rng(seed)
    frequency = np.where(rng.random(n) < 0.6, 0.0, rng.geometric(0.35, n).astype(float))
    recency = np.where(rng.random(n) < 0.25, 0.0, np.floor(rng.exponential(60.0, n)))
    monetary = np.where(frequency > 0, rng.lognormal(np.log(40.0), 0.9, n), 0.0)
    return recency, frequency, monetary


def repeat_buyers(n: int, seed: int) -> tuple[Floats, Floats, Floats]:
    """No zeros at all: continuous recency, frequency from 1, lognormal monetary."""
    rng = np.random.default_rng(seed)
    recency = rng.gamma(0.7, 40.0, n) + 1e-3
    frequency = 1.0 + rng.poisson(4.0, n).astype(np.float64)
    monetary = rng.lognormal(np.log(55.0), 1.2, n)
    return recency, frequency, monetary


def sketch_of(r: Floats, f: Floats, m: Floats, partition: int = ALL_PARTITIONS) -> RfmSketch:
    sketch = RfmSketch(partition, AS_OF)
    for values in zip(r.tolist(), f.tolist(), m.tolist(), strict=True):
        sketch.add(*values)
    return sketch


def partition_summaries(r: Floats, f: Floats, m: Floats) -> list[bytes]:
    part = np.arange(len(r)) % PARTITIONS
    return [
        sketch_of(r[part == p], f[part == p], m[part == p], p).to_bytes() for p in range(PARTITIONS)
    ]


def close(approx: float, exact: float, rel: float = RELATIVE_ACCURACY) -> bool:
    return abs(approx - exact) <= rel * abs(exact) + 1e-12


# ------------------------------------------------------------------------------------------
# Wire format
# ------------------------------------------------------------------------------------------


def test_round_trip_keeps_partition_as_of_count_and_quantiles() -> None:
    r, f, m = mixed_population(2000, seed=1)
    sketch = sketch_of(r, f, m, partition=3)
    raw = sketch.to_bytes()
    back = RfmSketch.from_bytes(raw)
    assert (back.partition, back.as_of, back.count) == (3, AS_OF, 2000)
    assert cut_points(back) == cut_points(sketch)
    assert back.to_bytes() == raw  # a decoded sketch re-encodes identically
    again = RfmSketch.from_bytes(back.to_bytes())
    again.merge(back)  # decoded sketches stay mergeable with each other and with fresh ones
    RfmSketch().merge(again)
    assert again.count == 4000


def test_empty_sketch_round_trips_and_has_no_cut_points() -> None:
    back = RfmSketch.from_bytes(RfmSketch(0, AS_OF).to_bytes())
    assert back.count == 0
    assert cut_points(back) is None
    assert cut_points(merge_all([])) is None


@pytest.mark.parametrize(
    "raw",
    [b"", b"garbage", b"RFMS", bytes(range(256)), b"\x00" * 64],
    ids=["empty", "text", "magic-only", "bytes", "zeros"],
)
def test_garbage_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError, match="RFM sketch summary"):
        RfmSketch.from_bytes(raw)


def test_damaged_summaries_are_value_errors() -> None:
    r, f, m = mixed_population(500, seed=2)
    raw = sketch_of(r, f, m, partition=1).to_bytes()
    for cut in (10, 30, 40, len(raw) // 2, len(raw) - 1):
        with pytest.raises(ValueError, match=r"truncated|corrupt"):
            RfmSketch.from_bytes(raw[:cut])
    with pytest.raises(ValueError, match="trailing"):
        RfmSketch.from_bytes(raw + b"\x00")
    with pytest.raises(ValueError, match="unsupported RFM sketch format version 2"):
        RfmSketch.from_bytes(raw[:4] + b"\x02" + raw[5:])
    with pytest.raises(ValueError, match="counts"):  # header count differs from the sketches
        RfmSketch.from_bytes(raw[:17] + struct.pack(">Q", 499) + raw[25:])
    garbled = bytearray(raw)
    garbled[29:45] = b"\xff" * 16  # inside the recency protobuf
    with pytest.raises(ValueError, match="recency"):
        RfmSketch.from_bytes(bytes(garbled))


def test_sketch_of_another_accuracy_is_refused() -> None:
    other = DDSketch(0.02)
    other.add(1.0)
    payload = DDSketchProto.to_proto(other).SerializeToString()
    header = struct.pack(">4sBidQ", b"RFMS", 1, 0, AS_OF, 1)
    raw = header + (struct.pack(">I", len(payload)) + payload) * 3
    with pytest.raises(ValueError, match=r"relative accuracy 0\.01"):
        RfmSketch.from_bytes(raw)


def test_non_finite_values_are_refused_and_not_counted() -> None:
    sketch = RfmSketch()
    with pytest.raises(ValueError, match="monetary"):
        sketch.add(1.0, 2.0, float("nan"))
    with pytest.raises(ValueError, match="recency"):
        sketch.add(float("inf"), 2.0, 3.0)
    assert sketch.count == 0


# ------------------------------------------------------------------------------------------
# Merge accuracy
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("population", [mixed_population, repeat_buyers])
def test_merged_partitions_match_numpy_on_the_concatenated_data(population: Population) -> None:
    r, f, m = population(40_000, 20261123)
    summaries = partition_summaries(r, f, m)
    merged = merge_all(summaries)
    assert merged.count == 40_000
    assert merged.partition == ALL_PARTITIONS

    # merging is exact: same quantiles as one sketch of all the data, in any order
    whole = sketch_of(r, f, m)
    qs = [i / 100 for i in range(101)]
    for dim in ("recency", "frequency", "monetary"):
        got = [getattr(merged, dim).get_quantile_value(q) for q in qs]
        assert got == pytest.approx([getattr(whole, dim).get_quantile_value(q) for q in qs])
    assert cut_points(merge_all(reversed(summaries))) == cut_points(merged)

    # and within the relative accuracy of the exact quantiles. DDSketch's quantile q is the
    # value of rank floor(q * (n - 1)), numpy's method="lower".
    for dim, values in (("recency", r), ("frequency", f), ("monetary", m)):
        exact = np.quantile(values, qs, method="lower")
        got = [getattr(merged, dim).get_quantile_value(q) for q in qs]
        bad = [(q, g, e) for q, g, e in zip(qs, got, exact, strict=True) if not close(g, e)]
        assert not bad, f"{dim}: (q, sketch, numpy) off by more than 1 %: {bad[:5]}"

    cuts = cut_points(merged)
    assert cuts is not None
    assert (cuts.customers, cuts.as_of) == (40_000, AS_OF)
    for dim, values in (("recency", r), ("frequency", f), ("monetary", m)):
        exact = np.quantile(values, QUANTILES, method="lower")
        assert all(close(c, e) for c, e in zip(getattr(cuts, dim), exact, strict=True))


def test_heavy_zero_ties_give_exact_zero_cuts() -> None:
    r, f, m = mixed_population(20_000, seed=5)
    cuts = cut_points(merge_all(partition_summaries(r, f, m)))
    assert cuts is not None
    assert cuts.frequency[:3] == (0.0, 0.0, 0.0)  # 60 % zeros: the 20/40/60 % cuts are 0
    assert cuts.frequency[3] > 0
    assert cuts.monetary[:3] == (0.0, 0.0, 0.0)
    assert cuts.recency[0] == 0.0  # 25 % ordered today
    assert cuts.recency[1] > 0


def test_merge_all_takes_the_newest_as_of_and_refuses_duplicate_partitions() -> None:
    a, b = RfmSketch(0, 100.0), RfmSketch(1, 250.0)
    a.add(1.0, 0.0, 0.0)
    b.add(2.0, 1.0, 10.0)
    merged = merge_all([a.to_bytes(), b.to_bytes()])
    assert (merged.count, merged.as_of, merged.partition) == (2, 250.0, ALL_PARTITIONS)
    with pytest.raises(ValueError, match="partition 0"):
        merge_all([a.to_bytes(), b.to_bytes(), a.to_bytes()])


# ------------------------------------------------------------------------------------------
# Cut points
# ------------------------------------------------------------------------------------------


def test_cut_points_dict_round_trip_through_json() -> None:
    r, f, m = mixed_population(3000, seed=3)
    cuts = cut_points(sketch_of(r, f, m))
    assert cuts is not None
    assert CutPoints.from_dict(orjson.loads(orjson.dumps(cuts.to_dict()))) == cuts


@pytest.mark.parametrize(
    "change",
    [
        {"recency": [1, 2, 3]},
        {"frequency": [0, 2, 1, 3]},
        {"monetary": [0, 1, 2, "x"]},
        {"monetary": [0, 1, 2, float("nan")]},
        {"customers": -1},
        {"customers": 1.5},
        {"as_of": "yesterday"},
    ],
)
def test_malformed_cut_points_dict_is_a_value_error(change: dict[str, object]) -> None:
    good = CutPoints((0, 1, 2, 3), (0, 0, 0, 2), (0, 0, 0, 50), 10, AS_OF).to_dict()
    with pytest.raises(ValueError):
        CutPoints.from_dict({**good, **change})
    del good["as_of"]
    with pytest.raises(ValueError, match="as_of"):
        CutPoints.from_dict(good)


# ------------------------------------------------------------------------------------------
# Scores
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "higher", "lower"),
    [
        (5.0, 1, 5),  # below all cuts
        (10.0, 1, 5),  # equal to the first cut: quintile 1
        (15.0, 2, 4),
        (20.0, 2, 4),
        (30.0, 3, 3),
        (35.0, 4, 2),
        (40.0, 4, 2),  # equal to the last cut: quintile 4
        (50.0, 5, 1),  # above all cuts
        (float("inf"), 5, 1),
        (-1.0, 1, 5),
    ],
)
def test_score_edges_both_directions(value: float, higher: int, lower: int) -> None:
    cuts = (10.0, 20.0, 30.0, 40.0)
    assert score(value, cuts, higher_is_better=True) == higher
    assert score(value, cuts, higher_is_better=False) == lower


def test_score_ties_at_zero() -> None:
    frequency_cuts = (0.0, 0.0, 0.0, 3.0)  # 60 % never reordered
    assert [score(v, frequency_cuts, higher_is_better=True) for v in (0, 1, 3, 4, 9)] == [
        1,
        4,
        4,
        5,
        5,
    ]
    recency_cuts = (0.0, 0.0, 7.0, 30.0)  # 40 % ordered today
    assert [score(v, recency_cuts, higher_is_better=False) for v in (0, 1, 7, 8, 30, 90)] == [
        5,
        3,
        3,
        2,
        2,
        1,
    ]
    assert score(0.0, (0.0,) * 4, higher_is_better=True) == 1  # everyone tied
    assert score(0.0, (0.0,) * 4, higher_is_better=False) == 5
    with pytest.raises(ValueError, match="NaN"):
        score(float("nan"), frequency_cuts, higher_is_better=True)


def test_population_with_60_percent_zero_frequency() -> None:
    r, f, m = mixed_population(20_000, seed=6)
    cuts = cut_points(sketch_of(r, f, m))
    assert cuts is not None
    f_scores = np.array([score(v, cuts.frequency, higher_is_better=True) for v in f.tolist()])
    assert set(f_scores[f == 0].tolist()) == {1}
    assert set(f_scores[f > 0].tolist()) == {4, 5}
    assert 0.1 < np.mean(f_scores == 5) <= 0.2  # the top (at most) fifth
    r_scores = np.array([score(v, cuts.recency, higher_is_better=False) for v in r.tolist()])
    assert set(r_scores[r == 0].tolist()) == {5}  # ordered today: best recency
    assert set(r_scores[r > 0].tolist()) == {1, 2, 3, 4}


@pytest.mark.parametrize("population", [mixed_population, repeat_buyers])
def test_sketched_cuts_score_like_exact_cuts(population: Population) -> None:
    """Whole-number values tie with a sketched cut exactly when they tie with the exact cut."""
    r, f, m = population(20_000, 7)
    cuts = cut_points(merge_all(partition_summaries(r, f, m)))
    assert cuts is not None
    for dim, values, higher in (("recency", r, False), ("frequency", f, True)):
        exact = tuple(np.quantile(values, QUANTILES, method="lower").tolist())
        whole = values[values == np.floor(values)].tolist()
        sketched = [score(v, getattr(cuts, dim), higher_is_better=higher) for v in whole]
        assert sketched == [score(v, exact, higher_is_better=higher) for v in whole], dim
    exact_m = tuple(np.quantile(m, QUANTILES, method="lower").tolist())
    differ = sum(
        score(v, cuts.monetary, higher_is_better=True) != score(v, exact_m, higher_is_better=True)
        for v in m.tolist()
    )
    assert differ / len(m) < 0.01  # only continuous values within ~1 % of a cut can differ


def test_a_sketched_quantile_ties_with_the_value_it_stands_for() -> None:
    values = [*range(1, 300), *np.geomspace(1e-3, 1e7, 500).tolist()]
    for value in values:
        sketch = RfmSketch()
        sketch.add(value, value, value)
        cuts = cut_points(RfmSketch.from_bytes(sketch.to_bytes()))
        assert cuts is not None
        assert score(value, cuts.frequency, higher_is_better=True) == 1, value
        assert score(value, cuts.recency, higher_is_better=False) == 5, value


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([0.0, 0.99, 1.0, 2.0, 5.0, 30.0, 60.5, 250.0, 400.0]),
        min_size=4,
        max_size=4,
    ).map(lambda c: tuple(sorted(c))),
    st.integers(min_value=0, max_value=600),
)
def test_next_score_change_is_the_first_higher_value_that_scores_otherwise(
    cuts: tuple[float, float, float, float], value: int
) -> None:
    now = score(value, cuts, higher_is_better=False)
    first = next(
        (v for v in range(value + 1, 2000) if score(v, cuts, higher_is_better=False) != now), None
    )
    assert next_score_change(value, cuts) == first


def test_add_counts_gives_the_sketch_of_one_add_per_customer() -> None:
    recency, frequency, monetary = mixed_population(3000, seed=5)
    one_by_one = RfmSketch(as_of=AS_OF)
    for r, f, m in zip(recency, frequency, monetary, strict=True):
        one_by_one.add(float(r), float(f), float(m))
    counted = RfmSketch(as_of=AS_OF)
    counted.add_counts(*(Counter(map(float, v)) for v in (recency, frequency, monetary)))
    assert counted.count == one_by_one.count == 3000
    assert cut_points(counted) == cut_points(one_by_one)
    for mine, theirs in zip(
        (counted.recency, counted.frequency, counted.monetary),
        (one_by_one.recency, one_by_one.frequency, one_by_one.monetary),
        strict=True,
    ):
        for q in np.linspace(0.0, 1.0, 101):
            assert mine.get_quantile_value(q) == theirs.get_quantile_value(q)


def test_add_counts_refuses_bad_counts_and_adds_nothing() -> None:
    sketch = RfmSketch(as_of=AS_OF)
    for bad in (
        ({1.0: 2}, {1.0: 1}, {1.0: 2}),  # frequency counts one customer less
        ({1.0: 0}, {1.0: 0}, {1.0: 0}),
        ({float("nan"): 1}, {1.0: 1}, {1.0: 1}),
    ):
        with pytest.raises(ValueError):
            sketch.add_counts(*bad)
    assert sketch.count == 0
