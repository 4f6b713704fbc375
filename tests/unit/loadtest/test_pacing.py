"""loadtest/pacing.py: the open loop keeps its schedule when the system is slow, and the wait
for a slot counts in each operation's latency (no coordinated omission)."""

import asyncio
import itertools
import time

from loadtest import pacing


async def test_open_loop_hands_out_due_times_on_the_schedule_even_when_capped() -> None:
    dues: list[float] = []
    starts: list[float] = []

    async def slow(index: int, due: float) -> None:
        dues.append(due)
        starts.append(time.perf_counter())
        await asyncio.sleep(0.03)  # 3x the period: one in flight at a time cannot keep up

    schedule = await pacing.run(slow, rate=100, duration_s=0.2, concurrency=1, drain_s=2)
    assert schedule.mode == "open" and schedule.started == len(dues) == 20
    gaps = [b - a for a, b in itertools.pairwise(dues)]
    assert all(abs(g - 0.01) < 1e-6 for g in gaps)  # due times never slip
    assert schedule.late_starts >= 10  # the cap made them start late...
    assert starts[-1] - dues[-1] > 0.2  # ...and an operation sees how late it started
    assert schedule.unfinished == 0


async def test_closed_loop_runs_back_to_back_workers_for_the_duration() -> None:
    running = 0
    most = 0

    async def op(index: int, due: float) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1

    schedule = await pacing.run(op, rate=0, duration_s=0.2, concurrency=3, drain_s=1)
    assert schedule.mode == "closed" and most == 3
    assert 30 <= schedule.started <= 70  # 3 workers x ~20 ops of 10 ms


async def test_operations_still_running_after_the_drain_are_cancelled_and_counted() -> None:
    async def stuck(index: int, due: float) -> None:
        await asyncio.sleep(60)

    schedule = await pacing.run(stuck, rate=50, duration_s=0.1, concurrency=10, drain_s=0.1)
    assert schedule.unfinished == schedule.started == 5


async def test_until_waits_for_a_condition_or_gives_up() -> None:
    flag = {"set": False}
    asyncio.get_running_loop().call_later(0.05, flag.update, {"set": True})
    assert await pacing.until(lambda: flag["set"], 2.0, every_s=0.01)
    assert not await pacing.until(lambda: False, 0.05, every_s=0.01)
