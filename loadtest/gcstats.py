"""The garbage collections a service ran while something was measured, read from its
/metrics (`sharetube_gc_pause_seconds`, services/common/gcpause.py): a slow round next to a
long collection is explained, one without is not.

    before = scrape(url)
    ...  # the rounds
    ran = collections_between(before, scrape(url))
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

METRIC = "sharetube_gc_pause_seconds"
LONG_S = 0.01  # "over_10ms": shows in a fan-out's p99 (a bucket bound of GC_PAUSE)

# generation -> {"count", "sum", "long"}: collections, seconds, collections over LONG_S.
Pauses = dict[str, dict[str, float]]


def parse(text: str) -> Pauses:
    pauses: Pauses = {}
    for family in text_string_to_metric_families(text):
        if family.name != METRIC:
            continue
        for sample in family.samples:
            generation = sample.labels.get("generation")
            if generation is None:
                continue
            row = pauses.setdefault(generation, {"count": 0.0, "sum": 0.0, "within": 0.0})
            if sample.name == f"{METRIC}_count":
                row["count"] = sample.value
            elif sample.name == f"{METRIC}_sum":
                row["sum"] = sample.value
            elif sample.name == f"{METRIC}_bucket" and float(sample.labels["le"]) == LONG_S:
                row["within"] = sample.value
    return {
        g: {"count": r["count"], "sum": r["sum"], "long": r["count"] - r["within"]}
        for g, r in pauses.items()
    }


def scrape(base_url: str, timeout_s: float = 5.0) -> Pauses | None:
    """The pauses so far of the service at `base_url` (its /metrics); None when it has none
    to give (an older build, or no answer), which a report shows as unknown."""
    try:
        response = httpx.get(f"{base_url.rstrip('/')}/metrics", timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    return parse(response.text) or None


def collections_between(before: Pauses | None, after: Pauses | None) -> dict[str, object] | None:
    """What ran between two scrapes: per generation the collections and their seconds, and
    how many of all took over LONG_S."""
    if before is None or after is None:
        return None
    zero = {"count": 0.0, "sum": 0.0, "long": 0.0}
    by_generation = {
        g: {
            "collections": int(after[g]["count"] - before.get(g, zero)["count"]),
            "seconds": round(after[g]["sum"] - before.get(g, zero)["sum"], 6),
        }
        for g in sorted(after)
    }
    long = sum(int(after[g]["long"] - before.get(g, zero)["long"]) for g in after)
    return {"by_generation": by_generation, "over_10ms": long}
