"""What the gateway does with a client socket: admit it, act on its frames, clean up after it.

wsserver.ClientSocket speaks the WebSocket protocol and calls these; they know sessions, rooms
and limits, and nothing of the bytes on the wire.
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.common import presence, sessions
from services.common.contracts import events
from services.common.contracts.errors import CloseCode, ErrorCode, ServiceError
from services.common.contracts.models import UserRef

from . import frames
from .connection import Connection, Socket
from .ratelimit import TokenBucket

if TYPE_CHECKING:
    from .app import GatewayState

log = logging.getLogger(__name__)

_LIMITED = ServiceError(ErrorCode.RATE_LIMITED, "Too many frames; slow down.")
_BUSY = ServiceError(ErrorCode.RATE_LIMITED, "Too many commands at once.")


@dataclass(frozen=True, slots=True)
class Refusal:
    """A socket not let in: refused before the upgrade (`http_status`, the client sees an
    HTTP error), or upgraded and closed at once with a code a browser can read (an HTTP
    refusal shows there as 1006), after `first_frame` when there is one."""

    http_status: int | None = None
    close_code: int = CloseCode.UNAUTHORIZED
    reason: str = ""
    first_frame: str | None = None


async def admit(
    gw: "GatewayState", origin: str | None, host: str | None, token: str
) -> tuple[UserRef, dict[str, Any]] | Refusal:
    assert gw.origins is not None
    if not gw.origins.allows(origin, host):
        log.warning("socket refused: origin %.100s not allowed", origin)
        return Refusal(http_status=403)
    try:
        user, claims = await sessions.authenticate(gw.redis, gw.settings.jwt_secret, token)
    except ServiceError as exc:
        if exc.code is ErrorCode.UNAVAILABLE:
            # Sessions cannot be checked (Redis away): not the token's fault.
            return Refusal(close_code=CloseCode.TRY_AGAIN_LATER, reason="try again later")
        return Refusal(http_status=403)
    if gw.draining:
        return Refusal(
            close_code=CloseCode.SERVICE_RESTART,
            reason="server restarting",
            first_frame=events.reconnect(gw.settings.drain_spread_ms),
        )
    return user, claims


def opened(gw: "GatewayState", socket: Socket, user: UserRef, claims: dict[str, Any]) -> Connection:
    settings = gw.settings
    conn = Connection(
        socket,
        user,
        presence.conn_id(settings.gateway_id, next(gw.counter)),
        settings.send_queue_bytes,
        # Every frame, good or bad, takes a token; one without a token goes no further.
        TokenBucket(settings.conn_rate_per_second, settings.conn_rate_burst),
        sessions.session_of(claims),
    )
    # Tokens are checked when a socket opens; one that outlives its token is closed then.
    expires_in_s = float(claims["exp"]) - time.time()
    conn.expiry = asyncio.get_running_loop().call_later(
        max(expires_in_s, 0.0), conn.drop, CloseCode.UNAUTHORIZED, "token expired"
    )
    gw.connections.add(conn)
    gw.sessions.setdefault(conn.sid, set()).add(conn)
    return conn


def received(gw: "GatewayState", conn: Connection, raw: str | bytes) -> None:
    """One whole message from the client: answered at once, or handed to a command task."""
    if conn.closed:
        return
    gw.frames.mark()
    assert conn.bucket is not None
    allowed = conn.bucket.take()
    if len(raw) > gw.settings.max_frame_bytes:
        conn.send(frames.reply_error(None, ServiceError(ErrorCode.TOO_LARGE)))
        return
    try:
        frame = frames.parse(raw)
    except frames.FrameError as exc:
        conn.send(frames.reply_error(exc.request_id, exc.error if allowed else _LIMITED))
        return
    if not allowed:
        conn.send(frames.reply_error(frame.id, _LIMITED))
        return
    if gw.dispatcher.immediate(conn, frame):
        return
    if conn.inflight >= gw.settings.max_inflight_per_socket:
        conn.send(frames.reply_error(frame.id, _BUSY))
        return
    conn.inflight += 1
    gw.spawn(_command(gw, conn, frame)).add_done_callback(lambda _t: _done(conn))


async def _command(gw: "GatewayState", conn: Connection, frame: frames.Frame) -> None:
    """A command for a service, within the user's rate across all their sockets."""
    assert gw.user_limiter is not None
    if not await gw.user_limiter.take(conn.user.id):
        conn.send(frames.reply_error(frame.id, _LIMITED))
        return
    try:
        await gw.dispatcher.handle(conn, frame)
    finally:
        gw.user_limiter.top_up(conn.user.id)  # Redis after the command, not ahead of it


def _done(conn: Connection) -> None:
    conn.inflight -= 1


def closed(gw: "GatewayState", conn: Connection) -> None:
    """The socket is gone: forget it here, and leave its rooms (the services are told)."""
    if conn.expiry is not None:
        conn.expiry.cancel()  # type: ignore[attr-defined]
    conn.mark_closed()
    gw.connections.discard(conn)
    same_session = gw.sessions.get(conn.sid)
    if same_session is not None:
        same_session.discard(conn)
        if not same_session:
            del gw.sessions[conn.sid]
    gw.spawn(gw.dispatcher.disconnected(conn))
