"""The gateway's ASGI app: the REST face, health and static portals; its state, which the
WebSocket server (wsserver.py, `/ws`) shares."""

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Header, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response

from services.common import bus, gcpause, runtime, sessions
from services.common import health as probes
from services.common.contracts import subjects
from services.common.contracts.envelope import CommandEnvelope, EvictNotice, GuestRequest
from services.common.contracts.errors import CloseCode, ErrorCode, ServiceError
from services.common.stats import RateMeter

from . import api, drain, heartbeat, notices, portals, sequencesweep, signin
from .commands import Dispatcher
from .connection import Connection
from .hub import Hub
from .origins import OriginPolicy
from .ratelimit import UserLimiter
from .sequencesweep import SequenceSweep
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
    # Command and clean-up tasks of the sockets (the loop holds tasks weakly).
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> "asyncio.Task[None]":
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


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

        async def evict_closed(room: str) -> int:
            return await notices.evict(app.state.gw, EvictNotice(room=room, reason="closed"))

        sweep = SequenceSweep(
            sequencesweep.asking_rooms(nc),
            app.state.gw.dispatcher.sequence_checks,
            evict_closed,
            settings.sequence_sweep_seconds,
        )
        sweeping = asyncio.create_task(sweep.run())
        gcpause.freeze_startup()  # short full collections while sockets come and go
        try:
            yield
        finally:
            await drain.drain(app.state.gw)  # done already when uvicorn ran DrainingServer
            await heartbeat.stop(beating, app.state.gw.redis, settings.gateway_id)
            sweeping.cancel()
            await asyncio.gather(sweeping, return_exceptions=True)
            await app.state.gw.dispatcher.sequence_checks.aclose()
            # Any socket the drain could not close in time: close it before the bus goes.
            for conn in list(app.state.gw.connections):
                conn.drop(CloseCode.GOING_AWAY, "server shutting down")
            await asyncio.sleep(0.1)
            with contextlib.suppress(Exception):
                await nc.drain()
            await app.state.gw.user_limiter.aclose()
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
