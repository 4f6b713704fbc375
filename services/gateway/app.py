"""The gateway's ASGI app: `/ws` for clients, the REST face, health, static portals."""

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Header, Request, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.websockets import WebSocketDisconnect

from services.common import bus, presence, runtime, sessions
from services.common import health as probes
from services.common.contracts import events, subjects
from services.common.contracts.envelope import CommandEnvelope, GuestRequest
from services.common.contracts.errors import CloseCode, ErrorCode, ServiceError
from services.common.stats import RateMeter

from . import api, drain, frames, heartbeat, notices, portals, signin
from .commands import Dispatcher
from .connection import Connection
from .hub import Hub
from .origins import OriginPolicy
from .ratelimit import TokenBucket, UserLimiter
from .settings import GatewaySettings

log = logging.getLogger(__name__)

_HTTP_STATUS = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.BAD_FRAME: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.NOT_CONFIGURED: 501,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.TIMEOUT: 504,
}


@dataclass
class GatewayState:
    settings: GatewaySettings
    hub: Hub
    dispatcher: Dispatcher
    nc: Any
    connections: set[Connection]
    counter: "itertools.count[int]"
    frames: RateMeter = field(default_factory=RateMeter)  # client frames per second
    redis: Any = None  # signed-out sessions (services/common/sessions.py)
    sessions: dict[str, set[Connection]] = field(default_factory=dict)  # sid -> its sockets
    draining: bool = False  # SIGTERM: sockets are being told to reconnect elsewhere
    origins: OriginPolicy | None = None  # who may open /ws from a browser page
    user_limiter: UserLimiter | None = None  # commands per user, across gateways (Redis)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def after_bus_reconnect() -> None:
            gw = getattr(app.state, "gw", None)
            if gw is not None:
                log.info("asked %d sockets to resync after a bus outage", gw.hub.ask_resync())

        nc = await bus.connect(
            settings.nats_url, f"gateway-{settings.gateway_id}", on_reconnect=after_bus_reconnect
        )
        hub = Hub(nc, settings.reorder_wait_s)
        app.state.gw = GatewayState(
            settings, hub, Dispatcher(nc, hub), nc, set(), itertools.count(1)
        )
        await notices.start(app.state.gw)  # evictions and stats requests
        # Short timeouts: a socket's sign-in check must not hang on a stuck Redis.
        app.state.gw.redis = runtime.redis_client(settings.redis_url, timeout_s=2.0)
        app.state.gw.origins = OriginPolicy.build(
            settings.allowed_origins, settings.backend_base_url, settings.cors_origins
        )
        app.state.gw.user_limiter = UserLimiter(
            app.state.gw.redis, settings.user_rate_per_second, settings.user_rate_burst
        )
        await signin.start(app.state.gw)  # sign-outs close their sockets
        beating = asyncio.create_task(
            heartbeat.run(
                app.state.gw.redis, settings.gateway_id, settings.presence_heartbeat_seconds
            )
        )
        try:
            yield
        finally:
            await drain.drain(app.state.gw)  # done already when uvicorn ran DrainingServer
            await heartbeat.stop(beating, app.state.gw.redis, settings.gateway_id)
            # Any socket the drain could not close in time: close it before the bus goes.
            for conn in list(app.state.gw.connections):
                conn.drop(CloseCode.GOING_AWAY, "server shutting down")
            await asyncio.sleep(0.1)
            with contextlib.suppress(Exception):
                await nc.drain()
            await app.state.gw.redis.aclose()

    app = FastAPI(title="ShareTube gateway", lifespan=lifespan)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[o.strip() for o in settings.cors_origins.split(",") if o.strip()],
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
    )
    _add_http_routes(app, settings)
    app.include_router(api.router)  # GET /api/rooms, GET /api/stats
    app.include_router(signin.router)  # /auth/google, /auth/google/callback, /auth/logout
    app.include_router(portals.router)  # /, /dashboard, /mobile-remote, GET /api/config
    portals.mount(app)  # /static/js/sharetube-client.js, /static/... (portals/)
    _add_socket_route(app, settings)
    return app


def _error_response(exc: ServiceError) -> JSONResponse:
    return JSONResponse({"error": exc.to_dict()}, status_code=_HTTP_STATUS.get(exc.code, 500))


def _bearer(authorization: str | None) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise ServiceError(ErrorCode.UNAUTHORIZED, "Send Authorization: Bearer <token>.")
    return authorization[7:].strip()


def _add_http_routes(app: FastAPI, settings: GatewaySettings) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return _error_response(exc)

    @app.post("/auth/guest")
    async def guest(request: Request) -> Response:
        try:
            body = GuestRequest.model_validate_json(await request.body())
        except ValueError as exc:
            raise ServiceError(ErrorCode.BAD_REQUEST, 'Send {"name": "..."}.') from exc
        reply = await bus.request(
            request.app.state.gw.nc, subjects.command("auth", "guest"), body, timeout_s=3.0
        )
        return Response(orjson.dumps(reply), media_type="application/json")

    @app.get("/auth/me")
    async def me(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Response:
        user, _claims = await sessions.authenticate(
            request.app.state.gw.redis, settings.jwt_secret, _bearer(authorization)
        )
        envelope = CommandEnvelope(id="me", user=user, data={})
        reply = await bus.request(
            request.app.state.gw.nc, subjects.command("auth", "me"), envelope, timeout_s=3.0
        )
        return Response(orjson.dumps(reply), media_type="application/json")

    @app.get("/api/health")
    async def health(request: Request) -> dict[str, Any]:
        gw: GatewayState = request.app.state.gw
        return {
            "status": "ok" if gw.nc.is_connected else "degraded",
            "gateway": settings.gateway_id,
            "connections": len(gw.connections),
            "rooms": gw.hub.room_count,
        }

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        gw: GatewayState = request.app.state.gw
        connected = gw.nc.is_connected
        # Redis too: without it no socket can sign in (sessions fail closed).
        redis_ok = (await probes.readiness({"redis": gw.redis.ping}))["redis"]
        ready = connected and redis_ok and not gw.draining
        return JSONResponse(
            {"nats": connected, "redis": redis_ok, "draining": gw.draining},
            status_code=200 if ready else 503,
        )


def _add_socket_route(app: FastAPI, settings: GatewaySettings) -> None:
    @app.websocket("/ws")
    async def socket(ws: WebSocket) -> None:
        gw: GatewayState = ws.app.state.gw
        assert gw.origins is not None
        origin = ws.headers.get("origin")
        if not gw.origins.allows(origin, ws.headers.get("host")):
            log.warning("socket refused: origin %.100s not allowed", origin)
            await ws.close(code=CloseCode.UNAUTHORIZED)  # before the upgrade: HTTP 403
            return
        try:
            user, claims = await sessions.authenticate(
                gw.redis, settings.jwt_secret, ws.query_params.get("token", "")
            )
        except ServiceError as exc:
            if exc.code is ErrorCode.UNAVAILABLE:
                # Sessions cannot be checked (Redis away): not the token's fault. Say "try
                # again later" in a way a browser can read (an HTTP refusal shows as 1006).
                await ws.accept()
                await ws.close(code=CloseCode.TRY_AGAIN_LATER, reason="try again later")
                return
            # Refused before the upgrade: the client sees HTTP 403, not an open socket.
            await ws.close(code=CloseCode.UNAUTHORIZED)
            return
        await ws.accept()
        if gw.draining:
            await ws.send_text(events.reconnect(settings.drain_spread_ms))
            await ws.close(code=CloseCode.SERVICE_RESTART, reason="server restarting")
            return
        conn = Connection(
            ws,
            user,
            presence.conn_id(settings.gateway_id, next(gw.counter)),
            settings.send_queue_frames,
            settings.send_queue_bytes,
        )
        # Tokens are checked when a socket opens; one that outlives its token is closed then.
        expires_in_s = float(claims["exp"]) - time.time()
        expiry = asyncio.get_running_loop().call_later(
            max(expires_in_s, 0.0), conn.drop, CloseCode.UNAUTHORIZED, "token expired"
        )
        gw.connections.add(conn)
        sid = sessions.session_of(claims)
        gw.sessions.setdefault(sid, set()).add(conn)
        writer = asyncio.create_task(conn.writer())
        try:
            await _read_loop(ws, conn, gw, settings)
        except WebSocketDisconnect:
            pass
        finally:
            expiry.cancel()
            conn.closed = True
            writer.cancel()
            gw.connections.discard(conn)
            same_session = gw.sessions.get(sid)
            if same_session is not None:
                same_session.discard(conn)
                if not same_session:
                    del gw.sessions[sid]
            await gw.dispatcher.disconnected(conn)


async def _read_loop(
    ws: WebSocket, conn: Connection, gw: GatewayState, settings: GatewaySettings
) -> None:
    tasks: set[asyncio.Task[None]] = set()
    # Every frame, good or bad, takes a token; one without a token goes no further.
    bucket = TokenBucket(settings.conn_rate_per_second, settings.conn_rate_burst)
    while not conn.closed:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        gw.frames.mark()
        allowed = bucket.take()
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        if len(raw) > settings.max_frame_bytes:
            conn.send(frames.reply_error(None, ServiceError(ErrorCode.TOO_LARGE)))
            continue
        try:
            frame = frames.parse(raw)
        except frames.FrameError as exc:
            conn.send(frames.reply_error(exc.request_id, exc.error if allowed else _LIMITED))
            continue
        if not allowed:
            conn.send(frames.reply_error(frame.id, _LIMITED))
            continue
        if gw.dispatcher.immediate(conn, frame):
            continue
        if conn.inflight >= settings.max_inflight_per_socket:
            conn.send(
                frames.reply_error(
                    frame.id, ServiceError(ErrorCode.RATE_LIMITED, "Too many commands at once.")
                )
            )
            continue
        conn.inflight += 1
        task = asyncio.create_task(_command(gw, conn, frame))
        tasks.add(task)
        task.add_done_callback(lambda t: (tasks.discard(t), _done(conn)))


_LIMITED = ServiceError(ErrorCode.RATE_LIMITED, "Too many frames; slow down.")


async def _command(gw: GatewayState, conn: Connection, frame: frames.Frame) -> None:
    """A command for a service, within the user's rate across all their sockets."""
    assert gw.user_limiter is not None
    if not await gw.user_limiter.take(conn.user.id):
        conn.send(frames.reply_error(frame.id, _LIMITED))
        return
    await gw.dispatcher.handle(conn, frame)


def _done(conn: Connection) -> None:
    conn.inflight -= 1
