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

The youngest generation is collected after 50,000 allocations instead of CPython's 700. A
command's objects (its task, futures, frames, the request to another service) live until it
is answered, a few ms; most are freed by their reference counts and never need the collector.
At 700, a collection ran every few commands and moved whatever was in flight to an older
generation, and under a burst of commands (1,000 players each saying `ready` after a seek)
those promotions set off full collections of the whole heap: in 20 such rounds a gateway
with 1,000 sockets ran 1,043–1,066 young, 95–97 middle and 9 full collections, 1.0 s of
pauses, each full one 60–70 ms. At 50,000 it ran none in the same rounds. A young collection
then walks at most about 50,000 objects (a few ms), and uncollected cyclic garbage stays
bounded by that count.
"""

import gc
import time
from typing import Any

from .metrics import GC_PAUSE

# Allocations (less deallocations) between young collections; then every 20th young one
# collects the middle generation, and the oldest as CPython decides (10, and only once a
# quarter of it is new). CPython's defaults: 700, 10, 10.
THRESHOLDS = (50_000, 20, 10)

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
    """Collect what startup left behind, then freeze everything still alive, and collect the
    young generation less often from then on (THRESHOLDS). Call once the service has
    imported and built what it serves with; returns the objects frozen."""
    gc.collect()  # garbage from startup goes now: a frozen object is never collected
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    time_pauses()
    return gc.get_freeze_count()
