"""The janitor's lease and leader loop against a real Redis: one leader at a time, renewal,
and takeover when the leader dies without a word (its lease simply stops being renewed)."""

import asyncio
import contextlib
import time
import uuid

import pytest
import redis.asyncio as aioredis

from services.janitor.lease import Lease
from services.janitor.service import Janitor

pytestmark = pytest.mark.integration


def key() -> str:
    return f"st:test:lease:{uuid.uuid4().hex}"


async def test_one_holder_at_a_time_and_only_the_holder_renews_or_releases(
    redis: aioredis.Redis,
) -> None:
    name = key()
    a, b = Lease(redis, "a", 5000, name), Lease(redis, "b", 5000, name)
    assert await a.acquire()
    assert not await b.acquire()
    assert await a.acquire(), "the holder taking it again keeps it"
    assert await a.renew() and not await b.renew()
    assert not await b.release(), "nobody deletes another's lease"
    assert await a.holder_now() == "a"
    assert await a.release()
    assert await b.acquire() and await b.holder_now() == "b"
    assert 0 < await b.remaining_ms() <= 5000


async def test_an_unrenewed_lease_expires_and_another_takes_it(redis: aioredis.Redis) -> None:
    name = key()
    a, b = Lease(redis, "a", 300, name), Lease(redis, "b", 300, name)
    assert await a.acquire()
    await asyncio.sleep(0.45)
    assert await b.acquire()
    assert not await a.renew(), "a late renewal cannot steal it back"


class CountingJobs:
    def __init__(self) -> None:
        self.runs = 0

    async def presence(self) -> None:
        self.runs += 1

    def maintenance(self) -> list[object]:
        return []

    def forget(self) -> None:
        pass


async def test_a_standby_takes_over_from_a_leader_that_died(redis: aioredis.Redis) -> None:
    name, lease_ms = key(), 900
    jobs = {"a": CountingJobs(), "b": CountingJobs()}
    janitors = {
        holder: Janitor(Lease(redis, holder, lease_ms, name), jobs[holder], 0.05, 3600)  # type: ignore[arg-type]
        for holder in ("a", "b")
    }
    stops = {holder: asyncio.Event() for holder in janitors}
    tasks = {h: asyncio.create_task(j.run(stops[h])) for h, j in janitors.items()}
    try:
        deadline = time.monotonic() + 10
        while not any(j.leading for j in janitors.values()):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        leader = next(h for h, j in janitors.items() if j.leading)
        standby = "b" if leader == "a" else "a"
        # Exactly one leads, for several renewals.
        for _ in range(40):
            assert [h for h, j in janitors.items() if j.leading] == [leader]
            await asyncio.sleep(0.05)
        assert jobs[leader].runs > 0 and jobs[standby].runs == 0

        # The leader dies: it neither renews nor releases (kill -9).
        async def no_release() -> bool:
            return False

        janitors[leader].lease.release = no_release  # type: ignore[method-assign]
        tasks[leader].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[leader]
        died = time.monotonic()
        while not janitors[standby].leading:
            assert time.monotonic() - died < 10, "no takeover"
            await asyncio.sleep(0.01)
        took = time.monotonic() - died
        print(f"\ntakeover after {took * 1000:.0f} ms (lease {lease_ms} ms)")
        runs = jobs[standby].runs
        await asyncio.sleep(0.3)
        assert jobs[standby].runs > runs, "the new leader runs the jobs"
    finally:
        for holder, stop in stops.items():
            stop.set()
            if not tasks[holder].done():
                await asyncio.wait_for(tasks[holder], 5)


async def test_a_clean_stop_hands_over_at_once(redis: aioredis.Redis) -> None:
    name = key()
    first = Janitor(Lease(redis, "first", 60_000, name), CountingJobs(), 0.05, 3600)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    for _ in range(500):
        if first.leading:
            break
        await asyncio.sleep(0.02)
    assert first.leading
    stop.set()
    await asyncio.wait_for(task, 5)
    assert await redis.get(name) is None, "released: a standby need not wait a minute"
