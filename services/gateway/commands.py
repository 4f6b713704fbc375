"""What the gateway does with one valid frame: relay it, or compose a snapshot for a join."""

import asyncio
import logging
import time
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from opentelemetry import context as otel_context
from opentelemetry import trace
from pydantic import ValidationError

from services.common import bus, tracing
from services.common.contracts import subjects
from services.common.contracts.commands import (
    GATEWAY_COMMANDS,
    ROUTES,
    SNAPSHOT_CHAT_MESSAGES,
    DriftReport,
    Route,
    TimePing,
)
from services.common.contracts.envelope import DisconnectNotice
from services.common.contracts.errors import ErrorCode, ServiceError

from . import frames, metrics
from .connection import Connection
from .frames import Frame
from .hub import Hub
from .sequencecheck import SequenceChecks, asking_rooms

log = logging.getLogger(__name__)

_SNAPSHOT_COMMANDS = frozenset({"join", "room.sync"})


class Dispatcher:
    def __init__(self, nc: NATS, hub: Hub) -> None:
        self.nc = nc
        self.hub = hub
        self.sequence_checks = SequenceChecks(asking_rooms(nc), hub)

    def immediate(self, conn: Connection, frame: Frame) -> bool:
        """Answer what needs no service at once (clock sync must not queue behind commands)."""
        metrics.FRAMES_RECEIVED.labels(metrics.frame_type(frame.type)).inc()
        if frame.type == "drift.report":
            self._drift(conn, frame)
            return True
        if frame.type != "time.ping":
            return False
        try:
            ping = TimePing.model_validate(frame.data)
        except ValidationError as exc:
            conn.send(frames.reply_error(frame.id, _bad_request(exc)))
            return True
        # Sub-millisecond server time: the client's offset estimate is no better than this.
        conn.send(frames.reply_ok(frame.id, {"t0": ping.t0, "server_ms": time.time_ns() / 1e6}))
        metrics.FRAMES_SENT.labels("reply").inc()
        return True

    def _drift(self, conn: Connection, frame: Frame) -> None:
        try:
            report = DriftReport.model_validate(frame.data)
        except ValidationError as exc:
            conn.send(frames.reply_error(frame.id, _bad_request(exc)))
            return
        metrics.SYNC_DRIFT_SECONDS.observe(abs(report.drift_ms) / 1000)
        if report.rate is not None:
            metrics.PLAYBACK_RATE.observe(report.rate)
        conn.send(frames.reply_ok(frame.id, {}))
        metrics.FRAMES_SENT.labels("reply").inc()

    async def handle(self, conn: Connection, frame: Frame) -> None:
        # The root of the command's own trace; its requests carry it to the services
        # (bus.py): one trace per command, not one per socket lifetime.
        with tracing.span(
            f"ws {metrics.frame_type(frame.type)}",
            context=otel_context.Context(),
            kind=trace.SpanKind.SERVER,
        ):
            await self._handle(conn, frame)
        metrics.FRAMES_SENT.labels("reply").inc()

    async def _handle(self, conn: Connection, frame: Frame) -> None:
        try:
            route = ROUTES.get(frame.type)
            if route is None:
                if frame.type in GATEWAY_COMMANDS:
                    return
                raise ServiceError(ErrorCode.UNKNOWN_TYPE, f"Unknown type: {frame.type[:32]}")
            if route.needs_room and frame.room is None:
                raise ServiceError(ErrorCode.BAD_REQUEST, "room: required")
            try:
                route.data.model_validate(frame.data)
            except ValidationError as exc:
                raise _bad_request(exc) from exc
            if frame.type in _SNAPSHOT_COMMANDS:
                await self._snapshot(conn, frame, route)
            else:
                raw = await self._request(conn, frame, route)
                conn.send(frames.splice_reply(frame.id, raw))
                self.sequence_checks.after_reply(frame.room, raw)
                if frame.type == "leave" and frame.room is not None:
                    conn.rooms.discard(frame.room)
                    await self.hub.remove(conn, frame.room)
        except ServiceError as exc:
            conn.send(frames.reply_error(frame.id, exc))
            self.sequence_checks.after_error(frame.room, exc.code)
        except Exception:
            log.exception("frame %s failed", frame.type)
            conn.send(frames.reply_error(frame.id, ServiceError(ErrorCode.INTERNAL)))

    async def _request(
        self, conn: Connection, frame: Frame, route: Route, data: dict[str, Any] | None = None
    ) -> bytes:
        envelope = orjson.dumps(
            {
                "id": frame.id,
                "user": orjson.Fragment(conn.user_json),
                "room": frame.room,
                "conn": conn.conn_id,
                "data": frame.data if data is None else data,
            }
        )
        return await bus.request_raw(self.nc, route.subject, envelope, route.timeout_s)

    async def _snapshot(self, conn: Connection, frame: Frame, route: Route) -> None:
        """join / room.sync: subscribe (join), read every part, reply, then release the
        events that arrived meanwhile, so the client sees them after its snapshot."""
        room = frame.room
        assert room is not None
        joining = frame.type == "join"
        if joining:
            channel = await self.hub.add(conn, room)
        else:
            channel = self.hub.channels.get(room)
            if channel is None or conn not in channel.members:
                raise ServiceError(ErrorCode.NOT_MEMBER)
        conn.hold(room)
        # Where a new channel's sequence starts waits for every snapshot that may set it.
        starts = channel.begin_read()
        try:
            snapshot, read_at = await self._read_snapshot(conn, frame, route)
            # Evicted meanwhile (notices.evict): a join is refused, a resync has no room.
            if conn.evicted_from(room) or (not joining and room not in conn.rooms):
                raise ServiceError(ErrorCode.NOT_MEMBER, "You were removed from the room.")
        except BaseException:
            if starts:
                channel.abandon_read()
            # Events held for a room the socket did not get into are not its to see.
            conn.release(room, deliver=room in conn.rooms)
            # Another join of this room on this socket may still be under way: it keeps
            # the subscription (and will add the room) unless it fails too.
            if joining and room not in conn.rooms and not conn.holds(room):
                await self.hub.remove(conn, room)
            raise
        if starts:
            channel.settle(read_at)
        conn.rooms.add(room)
        conn.send(frames.reply_ok(frame.id, snapshot))
        conn.release(room)

    async def _read_snapshot(
        self, conn: Connection, frame: Frame, route: Route
    ) -> tuple[dict[str, Any], int]:
        """Every part of the room, composed; and the room version it was read at. Rooms'
        part first (a join makes the member the queue and chat then ask rooms about), then
        the queue's and chat's side by side."""
        rooms_part = _unwrap(await self._request(conn, frame, route))
        queue_raw, chat_raw = await asyncio.gather(
            self._request(conn, frame, ROUTES["queue.load"], {}),
            self._request(conn, frame, ROUTES["chat.history"], {"limit": SNAPSHOT_CHAT_MESSAGES}),
        )
        queue_part, chat_part = _unwrap(queue_raw), _unwrap(chat_raw)
        versions = {
            **rooms_part.pop("versions"),
            **queue_part["versions"],
            **chat_part["versions"],
        }
        # Each part says which room version it was read at. Every event after the earliest
        # read reaches this channel (it subscribed first), so the room's sequence continues
        # from there; events the later parts already include are skipped by the client's
        # per-part versions.
        read_at = min(part.pop("seq") for part in (rooms_part, queue_part, chat_part))
        snapshot = {
            **rooms_part,
            "queue": queue_part["queue"],
            "chat": chat_part["messages"][::-1],  # history is newest first; chat reads down
            "versions": versions,
            "v": max(versions.values()),
        }
        return snapshot, read_at

    async def disconnected(self, conn: Connection) -> None:
        """The socket is gone: leave its rooms locally and tell rooms, so it stops waiting
        for this player and shows the member away."""
        rooms = list(conn.rooms)
        conn.rooms.clear()
        for room in rooms:
            await self.hub.remove(conn, room)
        await asyncio.gather(
            *(self._notify_disconnect(room, conn.conn_id) for room in rooms),
            return_exceptions=True,
        )

    async def _notify_disconnect(self, room: str, conn_id: str) -> None:
        try:
            await bus.request(
                self.nc,
                subjects.command("rooms", "disconnect"),
                bus.internal_envelope(DisconnectNotice(room=room, conn=conn_id), room=room),
                timeout_s=3.0,
            )
        except ServiceError as exc:
            log.warning("disconnect of %s from %s not recorded: %s", conn_id, room, exc.code)


def _unwrap(raw: bytes) -> dict[str, Any]:
    reply = orjson.loads(raw)
    if reply.get("ok"):
        return reply["data"]
    err = reply.get("error") or {}
    try:
        code = ErrorCode(err.get("code"))
    except ValueError:
        code = ErrorCode.INTERNAL
    raise ServiceError(code, err.get("message"))


def _bad_request(exc: ValidationError) -> ServiceError:
    return ServiceError(ErrorCode.BAD_REQUEST, bus.validation_message(exc))
