"""Short garbage-collector pauses: what a service builds before it serves is frozen.

CPython's full (generation 2) collection walks every object the collector tracks, and the
service stops meanwhile. A service at rest tracks 110,000–120,000 objects, nearly all of them
modules, classes, functions and settings made at startup. On the benchmark VM a full
collection took 40–55 ms in rooms, 13 times in a minute of load (a stall of every command in
flight each time), and 165–200 ms in a gateway holding 1,000 sockets (every room's events
held back meanwhile). Those objects live as long as the process, so `gc.freeze()` moves them
where collections no longer look; what the service makes while it serves is collected as
before.

Every collection's pause is timed into `sharetube_gc_pause_seconds{generation}`, so a stall
in a fan-out or a command shows on the dashboards next to the collections that caused it.
"""

import gc
import time
from typing import Any

from .metrics import GC_PAUSE

_started: list[float] = []  # the running collection's start; collections never nest
_pause_by_generation = [GC_PAUSE.labels(str(g)) for g in range(3)]  # series exist from 0


def _time_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started.append(time.perf_counter())
    elif _started:
        _pause_by_generation[info["generation"]].observe(time.perf_counter() - _started.pop())


def time_pauses() -> None:
    """Time every garbage collection from now on (once per process; again is a no-op)."""
    if _time_collection not in gc.callbacks:
        gc.callbacks.append(_time_collection)


def freeze_startup() -> int:
    """Collect what startup left behind, then freeze everything still alive. Call once the
    service has imported and built what it serves with; returns the objects frozen."""
    gc.collect()  # garbage from startup goes now: a frozen object is never collected
    gc.freeze()
    time_pauses()
    return gc.get_freeze_count()
