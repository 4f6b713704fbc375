"""loadtest/gcstats.py reads a service's garbage-collection pauses from the text its /metrics
serves (the real histogram of services/common/gcpause.py) and tells what ran between two
reads."""

import gc

from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest

from loadtest import gcstats
from services.common import gcpause
from services.common.metrics import GC_PAUSE_BUCKETS


def _exposition(pauses: dict[str, list[float]]) -> str:
    registry = CollectorRegistry()
    histogram = Histogram(
        gcstats.METRIC,
        "pauses",
        ["generation"],
        buckets=GC_PAUSE_BUCKETS,
        registry=registry,
    )
    for generation, seconds in pauses.items():
        child = histogram.labels(generation)
        for s in seconds:
            child.observe(s)
    return generate_latest(registry).decode()


def test_the_service_histogram_parses_by_generation() -> None:
    gcpause.time_pauses()
    gc.collect(2)
    pauses = gcstats.parse(generate_latest(REGISTRY).decode())
    assert set(pauses) >= {"0", "1", "2"}
    assert pauses["2"]["count"] >= 1 and pauses["2"]["sum"] > 0


def test_collections_between_two_reads_count_long_pauses() -> None:
    before = gcstats.parse(_exposition({"0": [0.0001], "1": [], "2": [0.03]}))
    after = gcstats.parse(
        _exposition({"0": [0.0001, 0.0002, 0.0004], "1": [0.002], "2": [0.03, 0.012, 0.02]})
    )
    ran = gcstats.collections_between(before, after)
    assert ran is not None
    assert ran["by_generation"] == {
        "0": {"collections": 2, "seconds": 0.0006},
        "1": {"collections": 1, "seconds": 0.002},
        "2": {"collections": 2, "seconds": 0.032},
    }
    assert ran["over_10ms"] == 2  # 12 and 20 ms; the 30 ms one came before


def test_a_pause_of_exactly_10ms_is_not_long_and_unknown_stays_unknown() -> None:
    before = gcstats.parse(_exposition({"2": []}))
    after = gcstats.parse(_exposition({"2": [0.01]}))
    ran = gcstats.collections_between(before, after)
    assert ran is not None and ran["over_10ms"] == 0
    assert gcstats.collections_between(None, after) is None
    assert gcstats.parse("# nothing here\n") == {}
    assert gcstats.scrape("http://127.0.0.1:9", timeout_s=0.5) is None  # nothing listens
