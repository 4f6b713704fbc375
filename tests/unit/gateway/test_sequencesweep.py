"""services/gateway/sequencesweep.py: every so often the gateway compares the rooms it has
members of with their committed versions, and a room still behind once in-flight events had
time to arrive gets the two-step sequence check, which resyncs it if its events were lost."""

import asyncio
from typing import Any

import orjson
import pytest

from services.common.contracts.envelope import MAX_SWEPT_ROOMS, RoomVersions, SequenceCheck
from services.common.contracts.errors import ErrorCode, ServiceError
from services.gateway.sequencecheck import SequenceChecks
from services.gateway.sequencesweep import SWEPT_ROOMS, SequenceSweep

from .test_sequencecheck import DELAY_S, Rooms, hub_with, settle

QUIET = "Quiet1"  # every event delivered
LOST = "Lost01"  # v6 committed by a process that died before publishing it


class Versions:
    """Stands in for rooms' `versions`: each room's committed version; unknown rooms (closed)
    are left out of the reply, as rooms does."""

    def __init__(self, committed: dict[str, int], fail: int = 0) -> None:
        self.committed = committed
        self.asked: list[list[str]] = []
        self.fail = fail  # the first `fail` requests time out

    async def __call__(self, query: RoomVersions) -> Any:
        self.asked.append(list(query.rooms))
        if len(self.asked) <= self.fail:
            raise ServiceError(ErrorCode.TIMEOUT)
        return {"versions": {r: self.committed[r] for r in query.rooms if r in self.committed}}


def swept() -> dict[str, float]:
    (metric,) = SWEPT_ROOMS.collect()
    return {s.labels["outcome"]: s.value for s in metric.samples if s.name.endswith("_total")}


class Evictions:
    """Stands in for the gateway's eviction of every local socket of a closed room."""

    def __init__(self) -> None:
        self.rooms: list[str] = []

    async def __call__(self, room: str) -> int:
        self.rooms.append(room)
        return 1


def sweep_of(
    versions: Versions, checks: SequenceChecks, evictions: Evictions | None = None
) -> SequenceSweep:
    return SequenceSweep(
        versions, checks, evictions or Evictions(), interval_s=DELAY_S, arrival_s=DELAY_S
    )


async def test_a_room_left_behind_is_resynced_and_a_room_in_step_is_not() -> None:
    hub = hub_with({QUIET: 5, LOST: 5})
    rooms = Rooms(committed=6)  # what the check hears of LOST
    checks = SequenceChecks(rooms, hub, delay_s=DELAY_S, arrival_s=DELAY_S)
    versions = Versions({QUIET: 5, LOST: 6})
    before = swept()
    assert await sweep_of(versions, checks).sweep() == [LOST]
    await settle(checks)
    assert versions.asked == [[QUIET, LOST]]
    assert rooms.asked == [
        SequenceCheck(room=LOST, seen_v=5),
        SequenceCheck(room=LOST, seen_v=5, resync=True),
    ]
    after = swept()
    assert after["behind"] == before.get("behind", 0) + 1
    assert after["in_step"] == before.get("in_step", 0) + 1


async def test_events_in_flight_during_the_sweep_bring_no_check() -> None:
    hub = hub_with({QUIET: 5})
    frame = orjson.dumps({"type": "playback", "room": QUIET, "v": 6, "data": {}})
    versions = Versions({QUIET: 6})  # committed as the sweep asks; its event arrives
    asyncio.get_running_loop().call_later(DELAY_S / 4, hub.channels[QUIET].on_event, 6, frame)
    rooms = Rooms(committed=6)
    checks = SequenceChecks(rooms, hub, delay_s=DELAY_S, arrival_s=DELAY_S)
    assert await sweep_of(versions, checks).sweep() == []
    await settle(checks)
    assert rooms.asked == []


async def test_rooms_without_a_sequence_or_under_a_check_are_not_asked_about() -> None:
    hub = hub_with({QUIET: None, LOST: 5})  # QUIET waits for its first snapshot
    rooms = Rooms(committed=6)
    checks = SequenceChecks(rooms, hub, delay_s=30, arrival_s=DELAY_S)
    checks.check(LOST)  # a command's check of LOST waits already
    versions = Versions({QUIET: 9, LOST: 6})
    assert await sweep_of(versions, checks).sweep() == []
    assert versions.asked == []
    await checks.aclose()


async def test_the_sockets_of_a_closed_room_leave_it() -> None:
    """Rooms leaves a closed room out of its answer: its `evict` notice may have been lost
    with the replica that closed it, so the sweep evicts the room's sockets here, and asks
    for no sequence check."""
    hub = hub_with({QUIET: 5, LOST: 5})
    rooms = Rooms(committed=6)
    checks = SequenceChecks(rooms, hub, delay_s=DELAY_S, arrival_s=DELAY_S)
    evictions = Evictions()
    before = swept()
    assert await sweep_of(Versions({QUIET: 5}), checks, evictions).sweep() == []
    await settle(checks)
    assert evictions.rooms == [LOST]
    assert rooms.asked == []
    assert swept()["closed"] == before.get("closed", 0) + 1


async def test_many_rooms_are_asked_about_in_bounded_requests_and_a_failed_one_is_skipped() -> None:
    count = 2 * MAX_SWEPT_ROOMS + 5
    names = [f"R{i:05d}" for i in range(count)]
    hub = hub_with({name: 3 for name in names})
    versions = Versions({name: 3 for name in names} | {names[0]: 4, names[-1]: 4}, fail=1)
    checks = SequenceChecks(Rooms(committed=4), hub, delay_s=30, arrival_s=DELAY_S)
    before = swept()
    # The first request (with names[0]) times out; the last one finds names[-1] behind.
    assert await sweep_of(versions, checks).sweep() == [names[-1]]
    assert [len(chunk) for chunk in versions.asked] == [MAX_SWEPT_ROOMS, MAX_SWEPT_ROOMS, 5]
    assert sorted(n for chunk in versions.asked for n in chunk) == names
    assert checks.checking(names[-1]) and not checks.checking(names[0])
    after = swept()
    assert after["unanswered"] == before.get("unanswered", 0) + MAX_SWEPT_ROOMS
    assert after["behind"] == before.get("behind", 0) + 1
    await checks.aclose()


async def test_the_sweep_runs_on_its_interval_and_outlives_a_failure() -> None:
    hub = hub_with({LOST: 5})
    rooms = Rooms(committed=6)
    checks = SequenceChecks(rooms, hub, delay_s=DELAY_S, arrival_s=DELAY_S)
    versions = Versions({LOST: 6}, fail=2)  # two sweeps unanswered, then it is found
    task = asyncio.create_task(sweep_of(versions, checks).run())
    try:
        for _ in range(200):
            if rooms.asked[-1:] == [SequenceCheck(room=LOST, seen_v=5, resync=True)]:
                break
            await asyncio.sleep(DELAY_S / 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await checks.aclose()
    assert len(versions.asked) >= 3
    assert rooms.asked[-1] == SequenceCheck(room=LOST, seen_v=5, resync=True)


@pytest.mark.parametrize("rooms", [[], [""], ["x" * 17], ["AbC123"] * (MAX_SWEPT_ROOMS + 1)])
def test_the_request_is_bounded(rooms: list[str]) -> None:
    with pytest.raises(ValueError):
        RoomVersions(rooms=rooms)
