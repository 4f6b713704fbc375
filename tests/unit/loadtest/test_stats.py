"""loadtest/stats.py: exact percentiles of short lists, and the 1 % log-bucket histogram."""

import random

import pytest

from loadtest.stats import Histogram, Tallies, describe, percentile


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 1.0) == 4.0
    assert percentile(values, 0.5) == 2.5  # numpy's default ("linear")
    assert percentile(values, 0.99) == pytest.approx(3.97)
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None


def test_describe_summarises_a_list_in_any_order() -> None:
    out = describe([5.0, 1.0, 3.0, 2.0, 4.0])
    assert out == {"count": 5, "p50": 3.0, "p95": 4.8, "p99": 4.96, "max": 5.0, "mean": 3.0}
    assert describe([]) == {
        "count": 0,
        "p50": None,
        "p95": None,
        "p99": None,
        "max": None,
        "mean": None,
    }


def test_histogram_percentiles_are_within_one_percent_of_the_exact_ones() -> None:
    rng = random.Random(8)
    values = [rng.lognormvariate(2.0, 1.0) for _ in range(20_000)]  # ms, long tail
    hist = Histogram()
    for v in values:
        hist.add(v)
    ordered = sorted(values)
    for q in (0.5, 0.95, 0.99, 0.999):
        exact = ordered[max(0, int(q * len(ordered)) - 1)]  # the nearest-rank quantile
        assert hist.quantile(q) == pytest.approx(exact, rel=0.01)
    assert hist.count == len(values)
    assert hist.max == max(values) and hist.min == min(values)
    assert hist.summary()["mean"] == pytest.approx(sum(values) / len(values), abs=0.001)


def test_histogram_never_reports_outside_what_it_saw() -> None:
    hist = Histogram()
    for v in (10.0, 10.0, 10.0):
        hist.add(v)
    assert hist.quantile(0.5) == hist.quantile(0.99) == 10.0  # clamped to min..max
    hist.add(0.0)
    hist.add(-1.0)  # a clock step backwards counts as 0, not as a negative latency
    assert hist.min == 0.0
    assert hist.quantile(0.0) == 0.0
    assert Histogram().quantile(0.99) is None
    assert Histogram().summary()["p99"] is None


def test_histograms_merge_as_if_fed_together() -> None:
    a, b, both = Histogram(), Histogram(), Histogram()
    for i in range(1, 1001):
        (a if i % 2 else b).add(float(i))
        both.add(float(i))
    a.merge(b)
    assert a.summary() == both.summary()


def test_tallies_count_replies_errors_and_missing_replies_per_kind() -> None:
    tallies = Tallies()
    tallies["seek"].ok(10.0)
    tallies["seek"].ok(20.0)
    tallies["pause"].ok(5.0)
    tallies["pause"].failed("forbidden")
    tallies["pause"].failed("timeout", acked=False)
    out = tallies.report(elapsed_s=2.0)
    assert out["total"]["ops"] == 3
    assert out["total"]["ops_per_s"] == 1.5
    assert out["total"]["errors_by_code"] == {"forbidden": 1, "timeout": 1}
    assert out["total"]["unacked"] == 1
    assert out["by_kind"]["seek"]["errors"] == 0
    assert out["by_kind"]["seek"]["latency_ms"]["max"] == 20.0
    assert out["by_kind"]["pause"]["ops"] == 1
