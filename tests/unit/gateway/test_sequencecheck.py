"""services/gateway/sequencecheck.py: after a room command ended in `timeout` or `internal`,
the gateway asks rooms for the room's version, and asks for a `resync` (with the last version
it delivered) only if the events up to that version do not arrive; after any other answer,
or for a room with no member here, it asks nothing."""

import asyncio
from typing import Any

import orjson
import pytest

from services.common import bus
from services.common.contracts.envelope import SequenceCheck
from services.common.contracts.errors import ErrorCode, ServiceError
from services.gateway.hub import Hub, RoomChannel
from services.gateway.sequencecheck import CHECKS, SequenceChecks

ROOM = "AbC123"
DELAY_S = 0.02


class Rooms:
    """Stands in for rooms' `sequence_check`: records each check; the room's version is
    `committed`, and a `resync` check past what the gateway delivered adds one."""

    def __init__(self, committed: int, error: ErrorCode | None = None) -> None:
        self.asked: list[SequenceCheck] = []
        self.committed = committed
        self.error = error
        self.after_first_ask: Any = None  # what happens meanwhile (events arriving)

    async def __call__(self, check: SequenceCheck) -> Any:
        self.asked.append(check)
        if self.error is not None:
            raise ServiceError(self.error)
        if len(self.asked) == 1 and self.after_first_ask is not None:
            self.after_first_ask()
        if check.resync and self.committed > check.seen_v:
            self.committed += 1
            return {"v": self.committed, "resynced": True}
        return {"v": self.committed, "resynced": False}


def hub_with(delivered: dict[str, int | None]) -> Hub:
    """A hub with a channel per room, delivered up to its version (None: no snapshot yet)."""
    hub = Hub(None, 0.05)  # type: ignore[arg-type]  # no bus: channels are made by hand
    for room, v in delivered.items():
        channel = RoomChannel(room, 0.05)
        if v is not None:
            channel.settle(v)  # as a snapshot read at that version does
        hub.channels[room] = channel
    return hub


def hub_with_room(delivered_up_to: int | None) -> Hub:
    return hub_with({ROOM: delivered_up_to})


def outcomes() -> dict[str, float]:
    (metric,) = CHECKS.collect()
    return {s.labels["outcome"]: s.value for s in metric.samples if s.name.endswith("_total")}


async def settle(checks: SequenceChecks) -> None:
    await asyncio.sleep(DELAY_S * 8)
    assert not checks._due, "the check is over"


def checks_of(rooms: Rooms, hub: Hub) -> SequenceChecks:
    return SequenceChecks(rooms, hub, delay_s=DELAY_S, arrival_s=DELAY_S)


@pytest.mark.parametrize("code", [ErrorCode.TIMEOUT, ErrorCode.INTERNAL])
async def test_lost_events_are_followed_by_a_resync(code: ErrorCode) -> None:
    rooms = Rooms(committed=6)  # v6 committed, never published
    checks = checks_of(rooms, hub_with_room(delivered_up_to=5))
    before = outcomes().get("resynced", 0)
    checks.after_error(ROOM, code)
    checks.after_error(ROOM, code)  # a second one while the first check waits: no more
    await settle(checks)
    assert rooms.asked == [
        SequenceCheck(room=ROOM, seen_v=5),
        SequenceCheck(room=ROOM, seen_v=5, resync=True),
    ]
    assert outcomes()["resynced"] == before + 1


async def test_a_room_in_order_gets_no_resync() -> None:
    rooms = Rooms(committed=5)
    checks = checks_of(rooms, hub_with_room(delivered_up_to=5))
    before = outcomes().get("in_order", 0)
    checks.after_error(ROOM, ErrorCode.TIMEOUT)
    await settle(checks)
    assert rooms.asked == [SequenceCheck(room=ROOM, seen_v=5)]
    assert outcomes()["in_order"] == before + 1


async def test_events_of_a_command_that_was_only_slow_are_waited_for() -> None:
    hub = hub_with_room(delivered_up_to=5)
    rooms = Rooms(committed=6)
    # The command that timed out commits as rooms answers, and its event arrives.
    frame = orjson.dumps({"type": "queue", "room": ROOM, "v": 6, "data": {}})
    rooms.after_first_ask = lambda: asyncio.get_running_loop().call_later(
        DELAY_S / 4, hub.channels[ROOM].on_event, 6, frame
    )
    checks = checks_of(rooms, hub)
    before = outcomes().get("in_order", 0)
    checks.after_error(ROOM, ErrorCode.TIMEOUT)
    await settle(checks)
    assert rooms.asked == [SequenceCheck(room=ROOM, seen_v=5)]
    assert outcomes()["in_order"] == before + 1


@pytest.mark.parametrize(
    "code", [ErrorCode.BAD_REQUEST, ErrorCode.FORBIDDEN, ErrorCode.UNAVAILABLE, "ok"]
)
async def test_a_clear_answer_asks_nothing(code: str) -> None:
    rooms = Rooms(committed=6)
    checks = checks_of(rooms, hub_with_room(delivered_up_to=5))
    checks.after_error(ROOM, code)
    await settle(checks)
    assert rooms.asked == []


async def test_an_internal_error_reply_relayed_as_is_asks() -> None:
    rooms = Rooms(committed=5)
    checks = checks_of(rooms, hub_with_room(delivered_up_to=5))
    before = outcomes().get("in_order", 0)
    checks.after_reply(ROOM, bus.ok({"v": 5}))
    checks.after_reply(ROOM, bus.error(ErrorCode.NOT_MEMBER))
    await settle(checks)
    assert rooms.asked == []
    checks.after_reply(ROOM, bus.error(ErrorCode.INTERNAL))
    await settle(checks)
    assert rooms.asked == [SequenceCheck(room=ROOM, seen_v=5)]
    assert outcomes()["in_order"] == before + 1


async def test_no_member_here_or_no_sequence_yet_asks_nothing() -> None:
    rooms = Rooms(committed=6)
    elsewhere = checks_of(rooms, hub_with_room(delivered_up_to=5))
    elsewhere.after_error("zzzzzz", ErrorCode.TIMEOUT)  # no channel of that room here
    unsettled = checks_of(rooms, hub_with_room(delivered_up_to=None))
    unsettled.after_error(ROOM, ErrorCode.TIMEOUT)  # a snapshot will start its sequence
    await settle(elsewhere)
    await settle(unsettled)
    assert rooms.asked == []


async def test_a_check_that_fails_is_counted_and_the_next_one_may_run() -> None:
    rooms = Rooms(committed=4, error=ErrorCode.TIMEOUT)
    checks = checks_of(rooms, hub_with_room(delivered_up_to=3))
    before = outcomes().get("failed", 0)
    checks.after_error(ROOM, ErrorCode.TIMEOUT)
    await settle(checks)
    checks.after_error(ROOM, ErrorCode.TIMEOUT)
    await settle(checks)
    assert len(rooms.asked) == 2
    assert outcomes()["failed"] == before + 2


async def test_closing_cancels_the_checks_waiting() -> None:
    rooms = Rooms(committed=4)
    checks = SequenceChecks(rooms, hub_with_room(delivered_up_to=3), delay_s=30)
    checks.after_error(ROOM, ErrorCode.TIMEOUT)
    await checks.aclose()
    assert rooms.asked == [] and not checks._due
