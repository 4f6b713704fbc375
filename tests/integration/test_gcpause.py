"""Full garbage collections stay short: a service freezes what it built at startup
(services/common/gcpause.py) once its connections are up, and collects startup's garbage
first (a frozen object is never collected)."""

import gc
import weakref
from collections.abc import Iterator

import pytest

from services.common import gcpause, runtime
from services.common.settings import CommonSettings

pytestmark = pytest.mark.integration


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test session's objects stay collectable


def test_startup_garbage_is_collected_and_the_rest_frozen(unfrozen: None) -> None:
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    del a, b
    kept = _Node()
    frozen = gcpause.freeze_startup()
    assert gone() is None  # collected before the freeze, not kept forever
    assert frozen == gc.get_freeze_count() > 1000
    assert not gc.is_tracked(kept) or kept not in gc.get_objects(generation=2)


async def test_a_service_freezes_once_its_connections_are_up(
    unfrozen: None, infra: dict[str, str]
) -> None:
    settings = CommonSettings(nats_url=infra["NATS_URL"])
    assert gc.get_freeze_count() == 0
    async with runtime.lifespan(settings, "gcpause-test", use_db=False, serve_health=False):
        assert gc.get_freeze_count() > 1000
