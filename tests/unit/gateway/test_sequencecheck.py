"""services/gateway/sequencecheck.py: after a room command ended in `timeout` or `internal`,
the gateway asks rooms about the room's sequence once, with the last version it delivered;
after any other answer, or for a room with no member here, it asks nothing."""

import asyncio
from typing import Any

import pytest

from services.common import bus
from services.common.contracts.envelope import SequenceCheck
from services.common.contracts.errors import ErrorCode, ServiceError
from services.gateway.hub import Hub, RoomChannel
from services.gateway.sequencecheck import CHECKS, SequenceChecks

ROOM = "AbC123"
DELAY_S = 0.02


class Rooms:
    """Stands in for rooms' `sequence_check`: records each check, answers `reply`."""

    def __init__(self, reply: Any = None, error: ErrorCode | None = None) -> None:
        self.asked: list[SequenceCheck] = []
        self.reply = reply if reply is not None else {"v": 7, "resynced": True}
        self.error = error

    async def __call__(self, check: SequenceCheck) -> Any:
        self.asked.append(check)
        if self.error is not None:
            raise ServiceError(self.error)
        return self.reply


def hub_with_room(delivered_up_to: int | None) -> Hub:
    hub = Hub(None, 0.05)  # type: ignore[arg-type]  # no bus: the channel is made by hand
    channel = RoomChannel(ROOM, 0.05)
    if delivered_up_to is not None:
        channel.settle(delivered_up_to)  # as a snapshot read at that version does
    hub.channels[ROOM] = channel
    return hub


def outcomes() -> dict[str, float]:
    (metric,) = CHECKS.collect()
    return {s.labels["outcome"]: s.value for s in metric.samples if s.name.endswith("_total")}


async def settle(checks: SequenceChecks) -> None:
    await asyncio.sleep(DELAY_S * 5)
    assert not checks._due, "the check is over"


@pytest.mark.parametrize("code", [ErrorCode.TIMEOUT, ErrorCode.INTERNAL])
async def test_an_unclear_end_asks_once_with_the_last_version_delivered(code: ErrorCode) -> None:
    rooms = Rooms()
    checks = SequenceChecks(rooms, hub_with_room(delivered_up_to=5), DELAY_S)
    before = outcomes().get("resynced", 0)
    checks.after_error(ROOM, code)
    checks.after_error(ROOM, code)  # a second one while the first check waits: no more
    await settle(checks)
    assert rooms.asked == [SequenceCheck(room=ROOM, seen_v=5)]
    assert outcomes()["resynced"] == before + 1


@pytest.mark.parametrize(
    "code", [ErrorCode.BAD_REQUEST, ErrorCode.FORBIDDEN, ErrorCode.UNAVAILABLE, "ok"]
)
async def test_a_clear_answer_asks_nothing(code: str) -> None:
    rooms = Rooms()
    checks = SequenceChecks(rooms, hub_with_room(delivered_up_to=5), DELAY_S)
    checks.after_error(ROOM, code)
    await settle(checks)
    assert rooms.asked == []


async def test_an_internal_error_reply_relayed_as_is_asks() -> None:
    rooms = Rooms(reply={"v": 5, "resynced": False})
    checks = SequenceChecks(rooms, hub_with_room(delivered_up_to=5), DELAY_S)
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
    rooms = Rooms()
    elsewhere = SequenceChecks(rooms, hub_with_room(delivered_up_to=5), DELAY_S)
    elsewhere.after_error("zzzzzz", ErrorCode.TIMEOUT)  # no channel of that room here
    unsettled = SequenceChecks(rooms, hub_with_room(delivered_up_to=None), DELAY_S)
    unsettled.after_error(ROOM, ErrorCode.TIMEOUT)  # a snapshot will start its sequence
    await settle(elsewhere)
    await settle(unsettled)
    assert rooms.asked == []


async def test_a_check_that_fails_is_counted_and_the_next_one_may_run() -> None:
    rooms = Rooms(error=ErrorCode.TIMEOUT)
    checks = SequenceChecks(rooms, hub_with_room(delivered_up_to=3), DELAY_S)
    before = outcomes().get("failed", 0)
    checks.after_error(ROOM, ErrorCode.TIMEOUT)
    await settle(checks)
    checks.after_error(ROOM, ErrorCode.TIMEOUT)
    await settle(checks)
    assert len(rooms.asked) == 2
    assert outcomes()["failed"] == before + 2


async def test_closing_cancels_the_checks_waiting() -> None:
    rooms = Rooms()
    checks = SequenceChecks(rooms, hub_with_room(delivered_up_to=3), delay_s=30)
    checks.after_error(ROOM, ErrorCode.TIMEOUT)
    await checks.aclose()
    assert rooms.asked == [] and not checks._due
