"""The NATS side of every service: connecting, serving commands, requesting other services.

A command handler receives a validated envelope and returns JSON-able data or raises
`ServiceError`; the router turns both into the reply `{"ok": ..., ...}`. Unknown exceptions
become `internal` and are logged here, never sent.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
import orjson
import psycopg
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import (
    ConnectionClosedError,
    ConnectionReconnectingError,
    NoRespondersError,
    OutboundBufferLimitError,
    SlowConsumerError,
)
from nats.errors import TimeoutError as NatsTimeoutError
from opentelemetry import trace
from pydantic import BaseModel, ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from . import tracing
from .contracts import subjects
from .contracts.envelope import CommandEnvelope
from .contracts.errors import ErrorCode, ServiceError
from .contracts.models import UserRef
from .lograte import Sparse
from .metrics import BUS_REQUEST_DURATION, COMMAND_DURATION, COMMANDS, NATS_ERRORS
from .stats import RateMeter

log = logging.getLogger(__name__)

# Users whose id starts so are services; tokens never carry such an id (auth issues UUIDs).
SERVICE_USER_PREFIX = "svc:"

# A command served slower than this is logged: a third of the bus timeout its caller waits
# (3 s), so the service's own log says which command was slow before anyone gives up on it.
SLOW_COMMAND_S = 1.0
_slow_commands = Sparse(log)
_unanswered = Sparse(log)

Handler = Callable[[CommandEnvelope, Any], Awaitable[Any]]


async def connect(
    url: str, name: str, on_reconnect: Callable[[], Awaitable[None]] | None = None
) -> NATS:
    """Connect for good: nats-py reconnects forever and replays the subscriptions;
    `on_reconnect` runs after that (the gateway asks its sockets to resync)."""

    async def error_cb(exc: Exception) -> None:
        NATS_ERRORS.labels(
            "slow_consumer" if isinstance(exc, SlowConsumerError) else type(exc).__name__
        ).inc()
        if isinstance(exc, SlowConsumerError):
            log.warning("nats slow consumer on %s", getattr(exc, "subject", "?"))
        else:
            log.warning("nats error: %r", exc)

    async def disconnected_cb() -> None:
        log.warning("nats disconnected")

    async def reconnected_cb() -> None:
        log.info("nats reconnected")
        if on_reconnect is not None:
            try:
                await on_reconnect()
            except Exception:
                log.exception("after-reconnect hook failed")

    return await nats.connect(
        url,
        name=name,
        error_cb=error_cb,
        disconnected_cb=disconnected_cb,
        reconnected_cb=reconnected_cb,
        max_reconnect_attempts=-1,  # a service never gives up on the bus
        reconnect_time_wait=0.5,
        # The buffer that holds publishes while reconnecting: nothing is dropped for 8 MB.
        pending_size=8 * 1024 * 1024,
    )


def ok(data: Any = None) -> bytes:
    return orjson.dumps({"ok": True, "data": data})


def error(code: ErrorCode, message: str | None = None) -> bytes:
    return orjson.dumps({"ok": False, "error": ServiceError(code, message).to_dict()})


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


@dataclass(frozen=True, slots=True)
class _Registered:
    handler: Handler
    model: type[BaseModel] | None
    internal: bool


class CommandRouter:
    """Registers a service's command handlers and serves them on its queue group."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._handlers: dict[str, _Registered] = {}
        self.meter = RateMeter()  # commands per second, for GET /api/stats
        # (command, outcome code) after each command: a service's own metrics (metrics.py).
        self._observers: list[Callable[[str, str], None]] = []

    def observe(self, observer: Callable[[str, str], None]) -> None:
        self._observers.append(observer)

    def command(
        self, name: str, model: type[BaseModel] | None = None, *, internal: bool = False
    ) -> Callable[[Handler], Handler]:
        """Register a handler; `internal` ones answer only other services, never users."""

        def register(handler: Handler) -> Handler:
            self._handlers[name] = _Registered(handler, model, internal)
            return handler

        return register

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._handlers)

    @property
    def internal_names(self) -> frozenset[str]:
        """The commands only services may send (users get `forbidden`)."""
        return frozenset(name for name, r in self._handlers.items() if r.internal)

    async def serve(self, nc: NATS, max_inflight: int) -> None:
        slots = asyncio.Semaphore(max_inflight)
        tasks: set[asyncio.Task[None]] = set()

        async def on_message(msg: Msg) -> None:
            # nats-py awaits this callback before delivering the next message of the
            # subscription, so take a slot (back-pressure) and run the command in a task.
            await slots.acquire()
            task = asyncio.create_task(self._run(msg, slots))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        await nc.subscribe(
            subjects.service_commands(self.service),
            queue=self.service,
            cb=on_message,
            pending_msgs_limit=65536,
        )

    async def _run(self, msg: Msg, slots: asyncio.Semaphore) -> None:
        try:
            with tracing.span(
                subjects.subject_template(msg.subject),
                headers=msg.headers or {},
                kind=trace.SpanKind.SERVER,
                attributes={"messaging.system": "nats", "sharetube.service": self.service},
            ):
                reply = await self.dispatch(msg.subject, msg.data)
            if msg.reply:
                await msg.respond(reply)
        except Exception:  # the reply itself failed (bus gone): nothing more to do here
            log.exception("could not reply on %s", msg.subject)
        finally:
            slots.release()

    async def dispatch(self, subject: str, payload: bytes) -> bytes:
        """Serve one command and count it (RED: rate, outcome code, duration)."""
        started = time.perf_counter()
        name = subjects.command_name(self.service, subject)
        command = name if name in self._handlers else "unknown"
        reply = await self._dispatch(name, subject, payload)
        seconds = time.perf_counter() - started
        COMMAND_DURATION.labels(self.service, command).observe(seconds)
        code = "ok"
        if not reply.startswith(b'{"ok":true'):
            code = str((orjson.loads(reply).get("error") or {}).get("code", "internal"))
        if seconds > SLOW_COMMAND_S:
            _slow_commands.warning(
                "slow command %s on %s: %.2f s (%s)", command, subject, seconds, code
            )
        COMMANDS.labels(self.service, command, code).inc()
        for observer in self._observers:
            observer(command, code)
        return reply

    async def _dispatch(self, name: str, subject: str, payload: bytes) -> bytes:
        self.meter.mark()
        registered = self._handlers.get(name)
        if registered is None:
            return error(ErrorCode.UNKNOWN_TYPE)
        try:
            envelope = CommandEnvelope.model_validate_json(payload)
        except ValidationError as exc:
            return error(ErrorCode.BAD_REQUEST, validation_message(exc))
        # Who asks before what they ask: a user's data for an internal command is not read.
        if registered.internal and not envelope.user.id.startswith(SERVICE_USER_PREFIX):
            return error(ErrorCode.FORBIDDEN)
        try:
            data = (
                registered.model.model_validate(envelope.data)
                if registered.model is not None
                else envelope.data
            )
        except ValidationError as exc:
            return error(ErrorCode.BAD_REQUEST, validation_message(exc))
        try:
            return ok(to_jsonable(await registered.handler(envelope, data)))
        except ServiceError as exc:
            return orjson.dumps({"ok": False, "error": exc.to_dict()})
        except Exception as exc:
            if is_outage(exc):
                # The database or Redis is away (restarting): nothing was committed, and the
                # client may retry with the same request id once it is back.
                log.warning("command %s: backing store unavailable: %r", subject, exc)
                return error(ErrorCode.UNAVAILABLE)
            log.exception("command %s failed", subject)
            return error(ErrorCode.INTERNAL)


def is_outage(exc: BaseException) -> bool:
    """A lost connection to PostgreSQL or Redis, as opposed to a bug."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return True  # the connections rooms and chat keep outside SQLAlchemy
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError, ConnectionError))


def validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "data"
    return f"{where}: {first.get('msg', 'invalid')}"[:200]


def internal_envelope(message: BaseModel, room: str | None = None) -> CommandEnvelope:
    """Wrap a service-to-service message; the caller is a service, not a user."""
    return CommandEnvelope(
        id=uuid.uuid4().hex,
        user=UserRef(id=f"{SERVICE_USER_PREFIX}{uuid.uuid4().hex[:8]}", name="service"),
        room=room,
        data=message.model_dump(mode="json"),
    )


async def publish(nc: NATS, subject: str, payload: bytes) -> None:
    """Publish with the current trace's `traceparent` in the headers (none when no trace is
    being recorded: OTLP unset costs nothing on the wire)."""
    headers = tracing.inject()
    if headers:
        await nc.publish(subject, payload, headers=headers)
    else:
        await nc.publish(subject, payload)


async def request(
    nc: NATS, subject: str, message: CommandEnvelope | BaseModel, timeout_s: float
) -> Any:
    """Ask another service; returns its reply data or raises its `ServiceError`."""
    envelope = message if isinstance(message, CommandEnvelope) else internal_envelope(message)
    raw = await request_raw(nc, subject, envelope.model_dump_json().encode(), timeout_s)
    reply = orjson.loads(raw)
    if reply.get("ok"):
        return reply.get("data")
    err = reply.get("error") or {}
    try:
        code = ErrorCode(err.get("code"))
    except ValueError:
        code = ErrorCode.INTERNAL
    raise ServiceError(code, err.get("message"))


async def request_raw(nc: NATS, subject: str, payload: bytes, timeout_s: float) -> bytes:
    """A request whose bus failures become `unavailable` / `timeout` service errors.
    Timed by subject template, traced with `traceparent` in the message headers."""
    template = subjects.subject_template(subject)
    started = time.perf_counter()
    outcome = "ok"
    with tracing.span(
        template, kind=trace.SpanKind.CLIENT, attributes={"messaging.system": "nats"}
    ):
        try:
            msg = await nc.request(subject, payload, timeout=timeout_s, headers=tracing.inject())
        except NoRespondersError as exc:
            outcome = "unavailable"
            raise ServiceError(ErrorCode.UNAVAILABLE) from exc
        except NatsTimeoutError as exc:
            outcome = "timeout"
            _unanswered.warning("no reply on %s within %.1f s", subject, timeout_s)
            raise ServiceError(ErrorCode.TIMEOUT) from exc
        except (
            ConnectionClosedError,
            ConnectionReconnectingError,
            OutboundBufferLimitError,
        ) as exc:
            # The bus itself is away; nats-py is reconnecting (or this process is stopping).
            outcome = "unavailable"
            raise ServiceError(ErrorCode.UNAVAILABLE) from exc
        finally:
            BUS_REQUEST_DURATION.labels(template, outcome).observe(time.perf_counter() - started)
    return msg.data
