"""Full garbage collections stay short: a service freezes what it built at startup
(services/common/gcpause.py) once its connections are up, and collects startup's garbage
first (a frozen object is never collected)."""

import gc
import weakref
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from services.common import gcpause, runtime
from services.common.settings import CommonSettings

pytestmark = pytest.mark.integration


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()  # the test session's objects stay collectable
    gc.set_threshold(*thresholds)


def test_startup_garbage_is_collected_and_the_rest_frozen(unfrozen: None) -> None:
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    del a, b
    kept = _Node()
    frozen = gcpause.freeze_startup()
    assert gone() is None  # collected before the freeze, not kept forever
    # A frozen object still dies when its last reference goes (a background thread's
    # temporaries, say), which lowers the count later: equal or a few fewer, never more.
    assert frozen > 1000
    assert frozen - 100 < gc.get_freeze_count() <= frozen
    assert not gc.is_tracked(kept) or kept not in gc.get_objects(generation=2)


def test_a_burst_of_short_lived_objects_sets_off_no_collection(unfrozen: None) -> None:
    """Commands in flight: a thousand at a time alive, each freed by its count once answered.
    At CPython's threshold (700) this ran collections that moved the ones in flight to older
    generations, and those set off full collections."""
    gcpause.freeze_startup()
    before = [generation["collections"] for generation in gc.get_stats()]
    in_flight: list[dict[str, int]] = []
    for i in range(20_000):
        in_flight.append({"command": i})
        if len(in_flight) > 1_000:
            in_flight.pop(0)  # answered
    assert [generation["collections"] for generation in gc.get_stats()] == before


async def test_a_service_freezes_once_its_connections_are_up(
    unfrozen: None, infra: dict[str, str]
) -> None:
    settings = CommonSettings(nats_url=infra["NATS_URL"])
    assert gc.get_freeze_count() == 0
    async with runtime.lifespan(settings, "gcpause-test", use_db=False, serve_health=False):
        assert gc.get_freeze_count() > 1000


def _collections(generation: int) -> tuple[float, float]:
    count = REGISTRY.get_sample_value(
        "sharetube_gc_pause_seconds_count", {"generation": str(generation)}
    )
    total = REGISTRY.get_sample_value(
        "sharetube_gc_pause_seconds_sum", {"generation": str(generation)}
    )
    return count or 0.0, total or 0.0


def test_every_collection_is_timed_by_generation() -> None:
    gcpause.time_pauses()
    gcpause.time_pauses()  # twice: still one callback, one observation per collection
    gc.disable()  # only the collections below: none started by the test's own allocations
    try:
        before = {g: _collections(g) for g in range(3)}
        gc.collect(2)
        gc.collect(0)
        gc.collect(0)
        after = {g: _collections(g) for g in range(3)}
    finally:
        gc.enable()
    assert after[2][0] - before[2][0] == 1
    assert after[1][0] == before[1][0]
    assert after[0][0] - before[0][0] == 2
    assert after[2][1] > before[2][1]  # a full collection takes some time
    assert gcpause._time_collection in gc.callbacks
    assert gc.callbacks.count(gcpause._time_collection) == 1
