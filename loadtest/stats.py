"""Latency histograms and outcome counters, cheap enough to update on every operation.

A `Histogram` keeps counts in logarithmic buckets 1 % wide (HdrHistogram's idea, without its
fixed-point detail): a percentile is read in microseconds whatever the number of samples, so
the progress line can show "p99 so far" every second of a long run, and a bucket's midpoint is
within 0.5 % of any value in it. Count, mean, min and max are exact.
"""

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

# Values are milliseconds. Under a microsecond is below what this process can time.
_FLOOR_MS: Final = 0.001
_GROWTH: Final = 1.01
_LOG_GROWTH: Final = math.log(_GROWTH)
QUANTILES: Final = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


def percentile(ordered: list[float], q: float) -> float | None:
    """The q-quantile of an ascending list (linear between closest ranks); None if empty."""
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q
    below = math.floor(rank)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (rank - below)


def describe(values: list[float]) -> dict[str, Any]:
    """Exact percentiles of a short list (sync samples): count, p50, p95, p99, max, mean."""
    ordered = sorted(values)
    out: dict[str, Any] = {"count": len(ordered)}
    for name, q in QUANTILES:
        out[name] = _round(percentile(ordered, q))
    out["max"] = _round(ordered[-1] if ordered else None)
    out["mean"] = _round(sum(ordered) / len(ordered) if ordered else None)
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class Histogram:
    """Milliseconds in 1 % log buckets; exact count, sum, min and max."""

    __slots__ = ("buckets", "count", "max", "min", "total")

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value_ms: float) -> None:
        value_ms = max(value_ms, 0.0)
        self.buckets[_bucket(value_ms)] += 1
        self.count += 1
        self.total += value_ms
        self.min = min(self.min, value_ms)
        self.max = max(self.max, value_ms)

    def merge(self, other: "Histogram") -> None:
        self.buckets.update(other.buckets)
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float | None:
        """The smallest bucket value with at least q of the samples at or below it."""
        if not self.count:
            return None
        wanted = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= wanted:
                return min(max(_midpoint(index), self.min), self.max)
        return self.max

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count}
        for name, q in QUANTILES:
            out[name] = _round(self.quantile(q))
        out["max"] = _round(self.max if self.count else None)
        out["mean"] = _round(self.total / self.count if self.count else None)
        return out


def _bucket(value_ms: float) -> int:
    if value_ms <= _FLOOR_MS:
        return 0
    return 1 + int(math.log(value_ms / _FLOOR_MS) / _LOG_GROWTH)


def _midpoint(index: int) -> float:
    if index == 0:
        return 0.0  # [0, floor]: raised to the minimum seen by the caller
    low = _FLOOR_MS * _GROWTH ** (index - 1)
    return low * math.sqrt(_GROWTH)  # geometric middle: within 0.5 % of both ends


@dataclass
class Tally:
    """What one kind of operation did: acknowledged ops, their latency, and the failures.

    `errors` counts error replies by code (`timeout` and `unavailable` included: the bus's
    own failures); `unacked` counts requests that got no reply at all (timeouts), which a
    correct system under a load it can carry never has.
    """

    latency: Histogram = field(default_factory=Histogram)
    errors: Counter[str] = field(default_factory=Counter)
    unacked: int = 0

    @property
    def ops(self) -> int:
        return self.latency.count

    def ok(self, latency_ms: float) -> None:
        self.latency.add(latency_ms)

    def failed(self, code: str, *, acked: bool = True) -> None:
        self.errors[code] += 1
        if not acked:
            self.unacked += 1

    def merge(self, other: "Tally") -> None:
        self.latency.merge(other.latency)
        self.errors.update(other.errors)
        self.unacked += other.unacked


class Tallies:
    """One `Tally` per operation kind, and their total."""

    def __init__(self) -> None:
        self.kinds: dict[str, Tally] = {}

    def __getitem__(self, kind: str) -> Tally:
        tally = self.kinds.get(kind)
        if tally is None:
            tally = self.kinds[kind] = Tally()
        return tally

    def total(self) -> Tally:
        out = Tally()
        for tally in self.kinds.values():
            out.merge(tally)
        return out

    def report(self, elapsed_s: float) -> dict[str, Any]:
        """`by_kind` and the totals, as the JSON report has them."""

        def one(tally: Tally) -> dict[str, Any]:
            return {
                "ops": tally.ops,
                "ops_per_s": round(tally.ops / elapsed_s, 2) if elapsed_s > 0 else None,
                "errors": sum(tally.errors.values()),
                "errors_by_code": dict(tally.errors),
                "unacked": tally.unacked,
                "latency_ms": tally.latency.summary(),
            }

        return {"total": one(self.total()), "by_kind": {k: one(t) for k, t in self.kinds.items()}}
