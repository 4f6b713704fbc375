"""services/common/roomevents.py: a room event the bus refused is lost but its change is
not; rooms is asked for a `resync` after it, again while the bus is away, until it answers
(or says the room is gone)."""

import asyncio
from typing import Any

import orjson
import pytest

from services.common import bus
from services.common.contracts import events
from services.common.contracts.envelope import CommandEnvelope, SequenceCheck
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.roomevents import RoomEvents

ROOM = "AbC123"
EVENT = events.encode("queue", ROOM, 12, [])


class Bus:
    """bus.publish and bus.request as this test wants them: publishes refused while
    `refusing`, rooms' answers taken from `answers` in turn."""

    def __init__(self, refusing: bool, answers: list[Any]) -> None:
        self.refusing = refusing
        self.answers = answers
        self.published: list[bytes] = []
        self.asked: list[SequenceCheck] = []

    async def publish(self, _nc: Any, _subject: str, payload: bytes) -> None:
        if self.refusing:
            raise ConnectionError("the bus is away")
        self.published.append(payload)

    async def request(self, _nc: Any, subject: str, envelope: CommandEnvelope, **_: Any) -> Any:
        assert subject == "st.rooms.cmd.sequence_check"
        self.asked.append(SequenceCheck.model_validate(envelope.data))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def fake_bus(monkeypatch: pytest.MonkeyPatch) -> Bus:
    fake = Bus(refusing=True, answers=[])
    monkeypatch.setattr(bus, "publish", fake.publish)
    monkeypatch.setattr(bus, "request", fake.request)
    return fake


async def repaired(room_events: RoomEvents) -> None:
    for _ in range(100):
        if not room_events._repairs:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the repair did not end")


async def test_a_published_event_needs_no_repair(fake_bus: Bus) -> None:
    fake_bus.refusing = False
    room_events = RoomEvents(None, repair_waits_s=(0.01,))  # type: ignore[arg-type]
    await room_events.publish(ROOM, events.subject_for("queue", ROOM), EVENT)
    await repaired(room_events)
    assert [orjson.loads(p)["v"] for p in fake_bus.published] == [12]
    assert fake_bus.asked == []


async def test_a_refused_event_is_repaired_once_rooms_answers(fake_bus: Bus) -> None:
    fake_bus.answers = [ServiceError(ErrorCode.UNAVAILABLE), {"v": 13, "resynced": True}]
    room_events = RoomEvents(None, repair_waits_s=(0.01, 0.01, 0.01))  # type: ignore[arg-type]
    await room_events.publish(ROOM, events.subject_for("queue", ROOM), EVENT)  # no raise
    await repaired(room_events)
    check = SequenceCheck(room=ROOM, seen_v=11, resync=True)
    assert fake_bus.asked == [check, check]


async def test_a_room_gone_meanwhile_ends_the_repair(fake_bus: Bus) -> None:
    fake_bus.answers = [ServiceError(ErrorCode.NOT_FOUND)]
    room_events = RoomEvents(None, repair_waits_s=(0.01, 0.01))  # type: ignore[arg-type]
    await room_events.publish(ROOM, events.subject_for("queue", ROOM), EVENT)
    await repaired(room_events)
    assert len(fake_bus.asked) == 1


async def test_closing_cancels_a_repair_that_waits(fake_bus: Bus) -> None:
    room_events = RoomEvents(None, repair_waits_s=(30,))  # type: ignore[arg-type]
    await room_events.publish(ROOM, events.subject_for("queue", ROOM), EVENT)
    await room_events.aclose()
    await repaired(room_events)
    assert fake_bus.asked == []
