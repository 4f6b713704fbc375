"""When operations start: on a fixed schedule (open loop) or back to back (closed loop).

Open loop: operation k is due at start + k / rate, whatever earlier replies did, and is
handed its due time; it measures its latency from then. When `concurrency` operations are
already in flight the next one waits for a slot, and that wait is part of its latency, so a
slow system cannot hide its slowness by slowing the load down (coordinated omission).
Closed loop (`rate` 0): `concurrency` workers, each starting its next operation when the
previous one has finished: the most the system does at that concurrency.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# An operation is given its index and its due time (time.perf_counter() seconds).
Operation = Callable[[int, float], Awaitable[None]]

# A start later than this after its due time is counted as late (the cap was reached, or this
# process had no CPU to spare); the latency includes the lag either way.
LATE_S = 0.005


@dataclass
class Schedule:
    mode: str
    target_rate: float | None
    concurrency: int
    started: int = 0
    late_starts: int = 0
    max_start_lag_ms: float = 0.0
    elapsed_s: float = 0.0
    unfinished: int = 0  # still running after the drain wait: cancelled, counted as lost

    def to_json(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "target_rate": self.target_rate,
            "concurrency": self.concurrency,
            "started": self.started,
            "late_starts": self.late_starts,
            "max_start_lag_ms": round(self.max_start_lag_ms, 3),
            "elapsed_s": round(self.elapsed_s, 3),
            "unfinished": self.unfinished,
        }


async def run(
    operation: Operation,
    *,
    rate: float,
    duration_s: float,
    concurrency: int,
    drain_s: float,
) -> Schedule:
    """Run `operation` for `duration_s`, then wait up to `drain_s` for those in flight."""
    schedule = Schedule("open" if rate > 0 else "closed", rate or None, concurrency)
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    end = start + duration_s

    async def guarded(index: int, due: float) -> None:
        lag = time.perf_counter() - due
        schedule.max_start_lag_ms = max(schedule.max_start_lag_ms, lag * 1000)
        if lag > LATE_S:
            schedule.late_starts += 1
        schedule.started += 1
        try:
            await operation(index, due)
        except Exception:  # an operation records its own failures; this is a bug in it
            log.exception("operation %d failed", index)

    if rate > 0:
        slots = asyncio.Semaphore(concurrency)
        period = 1.0 / rate
        index = 0
        while (due := start + index * period) < end:
            wait = due - time.perf_counter()
            if wait > 0.0005:
                await asyncio.sleep(wait)
            await slots.acquire()
            task = asyncio.create_task(guarded(index, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            task.add_done_callback(lambda _t: slots.release())
            index += 1
    else:
        counter = iter(range(1 << 62))

        async def worker() -> None:
            while time.perf_counter() < end:
                await guarded(next(counter), time.perf_counter())

        tasks.update(asyncio.create_task(worker()) for _ in range(concurrency))
        drain_s += duration_s  # the workers run until the end themselves
    # Open loop: the rate is over the schedule's span (operations still finish after it).
    schedule.elapsed_s = max(time.perf_counter(), end) - start
    if tasks:
        _done, pending = await asyncio.wait(set(tasks), timeout=drain_s)
        schedule.unfinished = len(pending)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
    if rate <= 0:
        schedule.elapsed_s = time.perf_counter() - start
    return schedule


async def until(condition: Callable[[], bool], timeout_s: float, every_s: float = 0.05) -> bool:
    """Wait until `condition()` holds (True) or `timeout_s` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(every_s)
    return True
