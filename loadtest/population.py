"""Rooms full of made-up members on the bus, for the drivers that bypass the gateway.

Each room is created by its first member (`control_mode` any, so every member may send
playback and queue commands) and joined by all of them, every one with a socket id under a
gateway id of this run's own: what a gateway would send. The room events
(`st.room.*.evt.>`) are watched from before the first join, so each room's versions must be
exactly 1, 2, 3, ... (loadtest/sequence.py). When the target names its Redis, the made-up
gateway keeps its liveness key as a real one does, so a janitor leaves its sessions alone.
"""

import asyncio
import contextlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from nats.aio.msg import Msg

from services.common import presence
from services.common.contracts import subjects

from .busclient import Actor, BusClient
from .errors import LoadError
from .pacing import until
from .progress import Progress
from .sequence import BUS_HOLD_S, VersionStream

# How often the made-up gateway renews its key, and how long the key lives without renewal.
BEAT_EVERY_S = 1.0
BEAT_TTL_MS = 5000
# After the load: how long the last events may take to arrive.
SETTLE_S = 5.0

EventHook = Callable[["BusRoom", str, dict[str, Any], float], None]


@dataclass
class BusRoom:
    code: str
    members: list[Actor]
    stream: VersionStream = field(default_factory=lambda: VersionStream(BUS_HOLD_S, after=0))
    events: int = 0

    @property
    def owner(self) -> Actor:
        return self.members[0]


class Population:
    def __init__(
        self,
        bus: BusClient,
        rooms: int,
        members: int,
        concurrency: int,
        progress: Progress,
        redis_url: str | None = None,
    ) -> None:
        self.bus = bus
        self.size = (rooms, members)
        self.concurrency = concurrency
        self.progress = progress
        self.redis_url = redis_url
        self.gateway_id = f"load-{secrets.token_hex(3)}"
        self.rooms: list[BusRoom] = []
        self.by_code: dict[str, BusRoom] = {}
        self.hooks: list[EventHook] = []
        self._conns = 0
        self._sub: Any = None
        self._beat: asyncio.Task[None] | None = None
        self._redis: aioredis.Redis | None = None

    def actor(self, name: str) -> Actor:
        self._conns += 1
        return Actor(uuid.uuid4().hex, name, presence.conn_id(self.gateway_id, self._conns))

    def member_at(self, index: int) -> tuple[BusRoom, Actor]:
        """Operation `index`'s room and member: round-robin over the rooms, then over each
        room's members."""
        room = self.rooms[index % len(self.rooms)]
        return room, room.members[(index // len(self.rooms)) % len(room.members)]

    async def start(self) -> None:
        if self.redis_url:
            self._redis = aioredis.Redis.from_url(self.redis_url)
            await presence.beat(self._redis, self.gateway_id, BEAT_TTL_MS)
            self._beat = asyncio.create_task(self._beating())
        self._sub = await self.bus.nc.subscribe(
            subjects.ROOM_EVENTS_WILDCARD, cb=self._on_event, pending_msgs_limit=1_000_000
        )
        rooms, members = self.size
        slots = asyncio.Semaphore(self.concurrency)
        started = time.monotonic()

        async def one(i: int) -> None:
            async with slots:
                await self._room(i, members)

        await asyncio.gather(*(one(i) for i in range(rooms)))
        self.progress.note(
            f"{rooms} rooms x {members} members on the bus in {time.monotonic() - started:.1f} s"
        )

    async def _room(self, i: int, members: int) -> None:
        actors = [self.actor(f"load{i}-{m}") for m in range(members)]
        created = await self.bus.command(
            "room.create", actors[0], None, {"name": f"load {i}", "control_mode": "any"}
        )
        if not created.ok:
            raise LoadError(f"room.create failed: {created.code}")
        room = BusRoom(created.data["room"]["code"], actors)
        self.by_code[room.code] = room  # before the first event (the first join)
        self.rooms.append(room)
        for actor in actors:
            await self.expect("join", actor, room.code, {"player": False})

    async def expect(
        self, command: str, actor: Actor, room: str, data: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A setup step that must succeed."""
        reply = await self.bus.command(command, actor, room, data)
        if not reply.ok:
            raise LoadError(f"{command} in {room} failed: {reply.code}")
        return reply.data

    async def _on_event(self, msg: Msg) -> None:
        at = time.perf_counter()
        # st.room.<code>.evt.<type>
        parts = msg.subject.split(".", 4)
        room = self.by_code.get(parts[2])
        if room is None:
            return  # someone else's room on a shared bus
        event = orjson.loads(msg.data)
        room.events += 1
        room.stream.see(int(event["v"]), at)
        for hook in self.hooks:
            hook(room, parts[4], event, at)

    async def _beating(self) -> None:
        assert self._redis is not None
        while True:
            await asyncio.sleep(BEAT_EVERY_S)
            with contextlib.suppress(Exception):  # a missed beat: the TTL covers a few
                await presence.beat(self._redis, self.gateway_id, BEAT_TTL_MS)

    def lost_so_far(self) -> int:
        """Versions missing for longer than the hold window, for the progress line."""
        now = time.perf_counter()
        return sum(
            1
            for room in self.rooms
            for since in room.stream.missing_since.values()
            if now - since > BUS_HOLD_S
        )

    async def settle(self) -> dict[str, int]:
        """Ask each room's version (room.sync), wait for the events up to it, then close every
        stream with it: a version never seen is lost, also at the tail."""
        slots = asyncio.Semaphore(self.concurrency)
        finals: dict[str, int | None] = {}

        async def final(room: BusRoom) -> None:
            async with slots:
                reply = await self.bus.command("room.sync", room.owner, room.code)
            finals[room.code] = int(reply.data["seq"]) if reply.ok else None

        await asyncio.gather(*(final(room) for room in self.rooms))
        await until(
            lambda: all(
                (finals[r.code] or 0) <= (r.stream.highest or 0) and not r.stream.missing_since
                for r in self.rooms
            ),
            SETTLE_S,
        )
        for room in self.rooms:
            room.stream.close(finals[room.code])
        return {"rooms_without_final_version": sum(1 for v in finals.values() if v is None)}

    async def stop(self) -> None:
        """Every member leaves (the rooms stay, empty, for the janitor to close)."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        slots = asyncio.Semaphore(self.concurrency)

        async def leave(room: BusRoom, actor: Actor) -> None:
            async with slots:
                await self.bus.command("leave", actor, room.code)

        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(leave(r, a) for r in self.rooms for a in r.members)), 30
            )
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await presence.forget(self._redis, self.gateway_id)
            await self._redis.aclose()
