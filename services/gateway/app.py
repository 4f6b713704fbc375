"""The gateway's ASGI app: `/ws` for clients, the REST face, health, static portals."""

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Header, Request, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.websockets import WebSocketDisconnect

from services.common import bus, tokens
from services.common.contracts import subjects
from services.common.contracts.envelope import CommandEnvelope, GuestRequest
from services.common.contracts.errors import CloseCode, ErrorCode, ServiceError

from . import frames
from .commands import Dispatcher
from .connection import Connection
from .hub import Hub
from .settings import GatewaySettings

log = logging.getLogger(__name__)

_HTTP_STATUS = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.BAD_FRAME: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.RATE_LIMITED: 429,
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


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nc = await bus.connect(settings.nats_url, f"gateway-{settings.gateway_id}")
        hub = Hub(nc, settings.reorder_wait_s)
        app.state.gw = GatewayState(
            settings, hub, Dispatcher(nc, hub), nc, set(), itertools.count(1)
        )
        try:
            yield
        finally:
            # Tell clients to reconnect (to another replica) before the bus goes away.
            for conn in list(app.state.gw.connections):
                conn.drop(CloseCode.GOING_AWAY, "server shutting down")
            await asyncio.sleep(0.1)
            with contextlib.suppress(Exception):
                await nc.drain()

    app = FastAPI(title="ShareTube gateway", lifespan=lifespan)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[o.strip() for o in settings.cors_origins.split(",") if o.strip()],
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
    )
    _add_http_routes(app, settings)
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
        user, _claims = tokens.verify(settings.jwt_secret, _bearer(authorization))
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
        connected = request.app.state.gw.nc.is_connected
        return JSONResponse({"nats": connected}, status_code=200 if connected else 503)


def _add_socket_route(app: FastAPI, settings: GatewaySettings) -> None:
    @app.websocket("/ws")
    async def socket(ws: WebSocket) -> None:
        gw: GatewayState = ws.app.state.gw
        try:
            user, _claims = tokens.verify(settings.jwt_secret, ws.query_params.get("token", ""))
        except ServiceError:
            # Refused before the upgrade: the client sees HTTP 403, not an open socket.
            await ws.close(code=CloseCode.UNAUTHORIZED)
            return
        await ws.accept()
        conn = Connection(
            ws,
            user,
            f"{settings.gateway_id}:{next(gw.counter)}",
            settings.send_queue_frames,
            settings.send_queue_bytes,
        )
        gw.connections.add(conn)
        writer = asyncio.create_task(conn.writer())
        try:
            await _read_loop(ws, conn, gw, settings)
        except WebSocketDisconnect:
            pass
        finally:
            conn.closed = True
            writer.cancel()
            gw.connections.discard(conn)
            await gw.dispatcher.disconnected(conn)


async def _read_loop(
    ws: WebSocket, conn: Connection, gw: GatewayState, settings: GatewaySettings
) -> None:
    tasks: set[asyncio.Task[None]] = set()
    while not conn.closed:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        if len(raw) > settings.max_frame_bytes:
            conn.send(frames.reply_error(None, ServiceError(ErrorCode.TOO_LARGE)))
            continue
        try:
            frame = frames.parse(raw)
        except frames.FrameError as exc:
            conn.send(frames.reply_error(exc.request_id, exc.error))
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
        task = asyncio.create_task(gw.dispatcher.handle(conn, frame))
        tasks.add(task)
        task.add_done_callback(lambda t: (tasks.discard(t), _done(conn)))


def _done(conn: Connection) -> None:
    conn.inflight -= 1
