"""The rooms service in-process, on a real database, with a bus that records what it
publishes: for the tests of its commands and the janitor's jobs (tests/integration/)."""

import asyncio
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.contracts.commands import RoomCreate
from services.common.contracts.envelope import CommandEnvelope
from services.common.contracts.models import Member, UserRef
from services.rooms import repository as rooms_repo
from services.rooms.playback import PlaybackState, Timing
from services.rooms.service import RoomsService


class Bus:
    """Records what rooms publishes (after commit); the tests read the members events."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.published.append((subject, payload))

    async def flush(self, timeout: float = 0) -> None:
        """Everything published is recorded at once."""

    def members_events(self) -> int:
        return sum(1 for subject, _ in self.published if subject.endswith(".evt.members"))


def user(name: str, admin: bool = False) -> UserRef:
    return UserRef(id=uuid.uuid4().hex, name=name, admin=admin)


def env(who: UserRef, room: str | None = None, conn: str | None = None) -> CommandEnvelope:
    return CommandEnvelope(id=uuid.uuid4().hex, user=who, room=room, conn=conn)


async def new_room(rooms: RoomsService, owner: UserRef) -> str:
    created = await rooms.create(env(owner), RoomCreate())
    return str(created["room"]["code"])


async def loaded(rooms: RoomsService, owner: UserRef) -> str:
    """A new room with a paused video loaded (as if the queue had loaded it)."""
    code = await new_room(rooms, owner)
    state = PlaybackState(
        status="paused", entry_id="e1", video_id="dQw4w9WgXcQ", duration_ms=600_000
    )
    async with rooms.engine.begin() as conn:
        await conn.execute(rooms_repo.room_update(code, rooms_repo.playback_values(state, 0)))
    return code


def rooms_service(engine: AsyncEngine) -> tuple[RoomsService, Bus]:
    bus = Bus()
    return RoomsService(engine, bus, Timing(200, 1500, 4000)), bus  # type: ignore[arg-type]


async def list_members(conn: AsyncConnection, code: str) -> list[Member]:
    """The room's listed members, as the rooms service lists them."""
    return [Member(**entry) for entry in await rooms_repo.member_entries(conn, code)]


async def members(rooms: RoomsService, code: str) -> dict[str, dict[str, Any]]:
    async with rooms.engine.connect() as conn:
        return {m.user_id: m.model_dump() for m in await list_members(conn, code)}


async def waiting_in_lines(rooms: RoomsService, code: str, count: int) -> None:
    """Until `count` commands of the room wait in its lines for the lock (services/rooms/
    lines.py); bounded: the test fails, it does not hang."""
    for _ in range(500):
        if rooms._lines.waiting(code) >= count:
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"{count} commands never waited together")
