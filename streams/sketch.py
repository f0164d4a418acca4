"""Mergeable RFM quantile sketch: per-partition summaries, quintile cut points and 1–5 scores.

Each worker summarises the customers of its partitions in an :class:`RfmSketch` — three
DDSketches, for recency (days since the last order), frequency (repeat purchase days) and
monetary (average repeat order value) — and publishes it with :meth:`RfmSketch.to_bytes`.
Every worker merges all partitions' summaries (:func:`merge_all`) into :class:`CutPoints`,
the 20, 40, 60 and 80 % quantiles, from which :func:`score` gives each customer R, F and M
scores from 1 to 5.

Accuracy: the quantile at ``q`` is the value of rank ``floor(q * (n - 1))`` in sorted order
(numpy's ``method="lower"``) to within ``RELATIVE_ACCURACY`` relative error, whatever the
number of customers or partitions and in whatever order summaries are merged. Zero has a bucket
of its own, so a quantile that falls on a zero (frequency 0, recency 0) is exactly 0.

Wire format, version 1 (big-endian)::

    b"RFMS" | version u8 | partition i32 | as_of f64 | count u64
    then for recency, frequency, monetary in that order: length u32 | DDSketch protobuf

The DDSketch payloads are the standard ``DDSketch`` protobuf message
(``ddsketch.pb.proto.DDSketchProto``), readable by the other DDSketch implementations. The
exact minimum, maximum and sum of the values are not carried (the message has no fields for
them); quantiles do not need them.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ddsketch import DDSketch
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.pb.proto import DDSketchProto, pb
from google.protobuf.message import DecodeError

from streams.caches import remember

RELATIVE_ACCURACY = 0.01
"""Relative accuracy of every quantile (DDSketch's alpha)."""

FORMAT_VERSION = 1
"""The summary wire format this module writes and reads."""

ALL_PARTITIONS = -1
"""``RfmSketch.partition`` of a sketch that is not (or no longer) one partition's summary."""

QUANTILES = (0.2, 0.4, 0.6, 0.8)
"""The quantiles that make the cut points between the five scores."""

_MAGIC = b"RFMS"
_HEADER = struct.Struct(">4sBidQ")  # magic, version, partition, as_of, count
_LENGTH = struct.Struct(">I")
_DIMENSIONS = ("recency", "frequency", "monetary")
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)

Cuts = tuple[float, float, float, float]


def _new_sketch() -> BaseDDSketch:
    return DDSketch(RELATIVE_ACCURACY)


def _not_finite(name: str, value: float) -> ValueError:
    """The error for an RFM value that is NaN or infinite."""
    return ValueError(f"{name} must be a finite number, got {value!r}")


class RfmSketch:
    """Recency, frequency and monetary distributions of a set of customers, mergeable.

    ``partition`` is the partition summarised (``ALL_PARTITIONS`` for a merge of several) and
    ``as_of`` the event time of the summary, in epoch seconds.
    """

    __slots__ = ("_sketches", "as_of", "partition")

    def __init__(self, partition: int = ALL_PARTITIONS, as_of: float = 0.0) -> None:
        if partition < ALL_PARTITIONS or partition > 2**31 - 1:
            raise ValueError(f"partition must be >= 0 or ALL_PARTITIONS (-1), got {partition}")
        if not math.isfinite(as_of):
            raise ValueError(f"as_of must be a finite epoch time, got {as_of!r}")
        self.partition = partition
        self.as_of = float(as_of)
        self._sketches: tuple[BaseDDSketch, BaseDDSketch, BaseDDSketch] = (
            _new_sketch(),
            _new_sketch(),
            _new_sketch(),
        )

    def __repr__(self) -> str:
        return f"RfmSketch(partition={self.partition}, as_of={self.as_of}, count={self.count})"

    @property
    def recency(self) -> BaseDDSketch:
        """The distribution of days since the last order."""
        return self._sketches[0]

    @property
    def frequency(self) -> BaseDDSketch:
        """The distribution of repeat purchase days."""
        return self._sketches[1]

    @property
    def monetary(self) -> BaseDDSketch:
        """The distribution of average repeat order values."""
        return self._sketches[2]

    @property
    def count(self) -> int:
        """The number of customers summarised."""
        return int(self._sketches[0].count)

    def add(self, recency_days: float, frequency: float, monetary: float) -> None:
        """Count one customer with these recency, frequency and monetary values.

        Raises ValueError for NaN or infinite values (nothing is added then).
        """
        isfinite = math.isfinite
        if not (isfinite(recency_days) and isfinite(frequency) and isfinite(monetary)):
            values = (recency_days, frequency, monetary)
            name, value = next(
                p for p in zip(_DIMENSIONS, values, strict=True) if not isfinite(p[1])
            )
            raise _not_finite(name, value)
        r, f, m = self._sketches
        r.add(float(recency_days))
        f.add(float(frequency))
        m.add(float(monetary))

    def add_counts(
        self,
        recency_days: Mapping[float, int],
        frequency: Mapping[float, int],
        monetary: Mapping[float, int],
    ) -> None:
        """Count customers by value: per dimension, each value with how many customers have
        it; the same distributions as one :meth:`add` per customer, in one weighted add per
        distinct value.

        Raises ValueError for a NaN or infinite value, a count below 1, or dimensions that
        count different numbers of customers (nothing is added then).
        """
        counts = (recency_days, frequency, monetary)
        for name, by_value in zip(_DIMENSIONS, counts, strict=True):
            for value, n in by_value.items():
                if not math.isfinite(value):
                    raise _not_finite(name, value)
                if n < 1:
                    raise ValueError(f"{name} {value!r}: count must be at least 1, got {n}")
        totals = [sum(by_value.values()) for by_value in counts]
        if len(set(totals)) > 1:
            raise ValueError(f"the dimensions count different numbers of customers: {totals}")
        for sketch, by_value in zip(self._sketches, counts, strict=True):
            for value in sorted(by_value):
                sketch.add(float(value), float(by_value[value]))

    def merge(self, other: RfmSketch) -> None:
        """Add the customers ``other`` summarises to this sketch (``other`` is unchanged).

        ``as_of`` becomes the newer of the two; ``partition`` becomes ``ALL_PARTITIONS``
        unless both are summaries of the same partition.
        """
        for mine, theirs in zip(self._sketches, other._sketches, strict=True):
            mine.merge(theirs)
        self.as_of = max(self.as_of, other.as_of)
        if other.partition != self.partition:
            self.partition = ALL_PARTITIONS

    def to_bytes(self) -> bytes:
        """This summary in the versioned wire format (see the module docstring)."""
        parts = [_HEADER.pack(_MAGIC, FORMAT_VERSION, self.partition, self.as_of, self.count)]
        for sketch in self._sketches:
            payload = DDSketchProto.to_proto(sketch).SerializeToString()
            parts.append(_LENGTH.pack(len(payload)))
            parts.append(payload)
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, raw: bytes) -> RfmSketch:
        """The summary that :meth:`to_bytes` wrote into ``raw``.

        Raises ValueError when ``raw`` is not such a summary, is truncated or corrupt, has
        another format version, or was made with another relative accuracy.
        """
        view = memoryview(raw)
        if bytes(view[: len(_MAGIC)]) != _MAGIC:
            raise ValueError("not an RFM sketch summary (no RFMS header)")
        if len(view) < _HEADER.size:
            raise ValueError("truncated RFM sketch summary (header cut short)")
        _magic, version, partition, as_of, count = _HEADER.unpack_from(view)
        if version != FORMAT_VERSION:
            raise ValueError(
                f"unsupported RFM sketch format version {version} (this build reads "
                f"version {FORMAT_VERSION})"
            )
        try:
            result = cls(partition, as_of)
        except ValueError as exc:
            raise ValueError(f"corrupt RFM sketch summary: {exc}") from None
        sketches: list[BaseDDSketch] = []
        pos = _HEADER.size
        for name in _DIMENSIONS:
            if pos + _LENGTH.size > len(view):
                raise ValueError(f"truncated RFM sketch summary (no {name} sketch)")
            (length,) = _LENGTH.unpack_from(view, pos)
            pos += _LENGTH.size
            if pos + length > len(view):
                raise ValueError(f"truncated RFM sketch summary ({name} sketch cut short)")
            sketches.append(_decode_sketch(name, bytes(view[pos : pos + length]), count))
            pos += length
        if pos != len(view):
            raise ValueError(f"corrupt RFM sketch summary ({len(view) - pos} trailing bytes)")
        result._sketches = (sketches[0], sketches[1], sketches[2])
        return result


def _decode_sketch(name: str, payload: bytes, count: int) -> BaseDDSketch:
    message = pb.DDSketch()
    try:
        message.ParseFromString(payload)
    except DecodeError as exc:
        raise ValueError(f"corrupt {name} sketch in RFM sketch summary: {exc}") from None
    if (
        message.mapping.gamma != _MAPPING.gamma
        or message.mapping.interpolation != pb.IndexMapping.NONE
    ):
        raise ValueError(
            f"{name} sketch has mapping gamma={message.mapping.gamma!r}, interpolation="
            f"{message.mapping.interpolation}; expected the logarithmic mapping for relative "
            f"accuracy {RELATIVE_ACCURACY} (gamma={_MAPPING.gamma!r})"
        )
    try:
        decoded = DDSketchProto.from_proto(message)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"corrupt {name} sketch in RFM sketch summary: {exc}") from None
    # from_proto rebuilds the mapping from gamma, which can differ from ours in the last bits
    # of its multiplier: keep the bins, use our mapping, so quantiles are bit-identical to the
    # sketch that was encoded.
    sketch = _new_sketch()
    sketch.merge(decoded)
    counts = [
        message.zeroCount,
        *message.positiveValues.contiguousBinCounts,
        *message.negativeValues.contiguousBinCounts,
    ]
    if not all(c >= 0 and math.isfinite(c) for c in counts) or sketch.count != count:
        raise ValueError(
            f"corrupt RFM sketch summary: {name} sketch counts {sketch.count!r} customers, "
            f"the header {count}"
        )
    return sketch


@dataclass(frozen=True, slots=True)
class CutPoints:
    """The 20, 40, 60 and 80 % quantiles of recency, frequency and monetary.

    ``customers`` is the number of customers they were computed from, ``as_of`` the event time
    (epoch seconds) of the newest summary merged.
    """

    recency: Cuts
    frequency: Cuts
    monetary: Cuts
    customers: int
    as_of: float
    # scores by dimension and value: a customer's frequency and monetary value stay put
    # between orders, and recency days are few, so most lookups hit
    _scored: tuple[dict[float, int], dict[float, int], dict[float, int]] = field(
        default_factory=lambda: ({}, {}, {}), init=False, repr=False, compare=False
    )

    def to_dict(self) -> dict[str, Any]:
        """These cut points as JSON-friendly lists and numbers (for snapshots)."""
        return {
            "recency": list(self.recency),
            "frequency": list(self.frequency),
            "monetary": list(self.monetary),
            "customers": self.customers,
            "as_of": self.as_of,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CutPoints:
        """The cut points :meth:`to_dict` returned; ValueError when ``data`` is malformed."""
        try:
            cuts = [_as_cuts(name, data[name]) for name in _DIMENSIONS]
            customers = data["customers"]
            as_of = data["as_of"]
        except KeyError as exc:
            raise ValueError(f"cut points lack {exc.args[0]!r}") from None
        if isinstance(customers, bool) or not isinstance(customers, int) or customers < 0:
            raise ValueError(f"customers must be a non-negative integer, got {customers!r}")
        if isinstance(as_of, bool) or not isinstance(as_of, int | float):
            raise ValueError(f"as_of must be a number, got {as_of!r}")
        return cls(cuts[0], cuts[1], cuts[2], customers, float(as_of))

    def scores(
        self, recency_days: float, frequency: float, monetary: float
    ) -> tuple[int, int, int]:
        """One customer's (R, F, M) scores, each 1–5, 5 best (see :func:`score`)."""
        by_r, by_f, by_m = self._scored
        r = by_r.get(recency_days)
        if r is None:
            r = score(recency_days, self.recency, higher_is_better=False)
            remember(by_r, recency_days, r, _SCORED_LIMIT)
        f = by_f.get(frequency)
        if f is None:
            f = score(frequency, self.frequency, higher_is_better=True)
            remember(by_f, frequency, f, _SCORED_LIMIT)
        m = by_m.get(monetary)
        if m is None:
            m = score(monetary, self.monetary, higher_is_better=True)
            remember(by_m, monetary, m, _SCORED_LIMIT)
        return r, f, m


_SCORED_LIMIT = 1 << 16
"""Values whose score one dimension of a :class:`CutPoints` keeps (then it starts afresh)."""


def _as_cuts(name: str, value: Any) -> Cuts:
    if not isinstance(value, list | tuple) or len(value) != len(QUANTILES):
        raise ValueError(f"{name} cut points must be a list of {len(QUANTILES)}, got {value!r}")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{name} cut points must be numbers, got {value!r}")
    cuts = tuple(float(v) for v in value)
    if not all(math.isfinite(v) for v in cuts) or list(cuts) != sorted(cuts):
        raise ValueError(f"{name} cut points must be finite and non-decreasing, got {value!r}")
    return cuts[0], cuts[1], cuts[2], cuts[3]


def _quantile_cuts(sketch: BaseDDSketch) -> Cuts:
    values = [sketch.get_quantile_value(q) for q in QUANTILES]
    cuts = [float(v) if v is not None else 0.0 for v in values]
    return cuts[0], cuts[1], cuts[2], cuts[3]


def cut_points(sketch: RfmSketch) -> CutPoints | None:
    """The quintile cut points of the customers ``sketch`` summarises; None when it is empty."""
    if sketch.count == 0:
        return None
    return CutPoints(
        recency=_quantile_cuts(sketch.recency),
        frequency=_quantile_cuts(sketch.frequency),
        monetary=_quantile_cuts(sketch.monetary),
        customers=sketch.count,
        as_of=sketch.as_of,
    )


def merge_all(summaries: Iterable[bytes]) -> RfmSketch:
    """One sketch of all customers in ``summaries`` (bytes from :meth:`RfmSketch.to_bytes`).

    Its ``as_of`` is the newest summary's, its ``partition`` ``ALL_PARTITIONS``; no summaries
    give an empty sketch. Raises ValueError for an undecodable summary or for two summaries of
    the same partition (which would count its customers twice).
    """
    return merge_sketches(RfmSketch.from_bytes(raw) for raw in summaries)


def merge_sketches(summaries: Iterable[RfmSketch]) -> RfmSketch:
    """:func:`merge_all` of decoded summaries."""
    merged = RfmSketch()
    seen: set[int] = set()
    for summary in summaries:
        if summary.partition != ALL_PARTITIONS:
            if summary.partition in seen:
                raise ValueError(f"two summaries of partition {summary.partition}")
            seen.add(summary.partition)
        merged.merge(summary)
    return merged


def next_score_change(value: int, cuts: Cuts) -> int | None:
    """The smallest whole value above ``value`` that scores differently against ``cuts`` (a
    day counter's next step that moves its score); None when no higher value does."""
    at = _at_resolution(value)
    for cut in cuts:  # ascending: the first cut the value is not above yet
        level = _at_resolution(cut)
        if level >= at:
            candidate = max(value + 1, math.floor(cut))
            while _at_resolution(candidate) <= level:
                candidate += 1
            return candidate
    return None


@lru_cache(maxsize=1 << 14)
def _at_resolution(value: float) -> float:
    """``value`` rounded to the representative value of its DDSketch bucket."""
    if math.isnan(value):
        raise ValueError("cannot score NaN")
    if math.isinf(value) or value > _MAPPING.max_possible or value < -_MAPPING.max_possible:
        return value
    if value > _MAPPING.min_possible:
        return float(_MAPPING.value(_MAPPING.key(value)))
    if value < -_MAPPING.min_possible:
        return -float(_MAPPING.value(_MAPPING.key(-value)))
    return 0.0


def score(value: float, cuts: Cuts, *, higher_is_better: bool) -> int:
    """The 1–5 score of ``value`` against quintile ``cuts`` (5 is best).

    The value's quintile is 1 + the number of cuts strictly below it, so quintile k holds the
    values in (cut k−1, cut k]. With ``higher_is_better`` (frequency, monetary) the score is
    that quintile; otherwise (recency) it is 6 − quintile.

    Tie rule: a value equal to a cut belongs to the quintile below that cut, so customers who
    tie share the quintile of the lowest value they tie at. When 60 % have frequency 0 (cuts
    0, 0, 0, c) they all score F = 1 and the others F = 4 (up to c) or 5; when 40 % have
    recency 0 (cuts 0, 0, r3, r4) they all score R = 5 and the others 3, 2 or 1. Equality is
    judged at the sketch's resolution: value and cuts are compared after rounding each to the
    representative value of its DDSketch bucket (buckets are about 2 × ``RELATIVE_ACCURACY``
    wide), so a value in the same bucket as a cut counts as equal to it — frequency 1 ties
    with a sketched cut of 0.99, the value the sketch returns for a quantile that is exactly 1.
    """
    at = _at_resolution(value)
    quintile = 1
    for cut in cuts:  # ascending
        if cut >= value:
            break  # the rounding keeps order: this cut and the ones above are not below
        if _at_resolution(cut) < at:
            quintile += 1
    return quintile if higher_is_better else 6 - quintile
