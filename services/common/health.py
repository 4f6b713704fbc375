"""/metrics, /healthz and /readyz for a service that serves no other HTTP.

A few lines of asyncio rather than a web framework: GET only, one request per connection.
`/healthz` says the loop is alive; `/readyz` checks NATS, the database and Redis (whichever
the process uses), each with a short timeout so a stuck backend reads as not ready.
METRICS_PORT 0 picks a free port; a taken port (several replicas on one machine, as in the
tests and `make run`) falls back to a free one. The port is logged either way.
"""

import asyncio
import contextlib
import errno
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

log = logging.getLogger(__name__)

_MAX_REQUEST_LINE = 4096
_CHECK_TIMEOUT_S = 2.0
_REASONS = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}

Check = Callable[[], Awaitable[bool]]

# Gauges read from the database when scraped (rooms active): awaited before each /metrics.
_before_scrape: list[Callable[[], Awaitable[None]]] = []


def before_scrape(refresh: Callable[[], Awaitable[None]]) -> None:
    _before_scrape.append(refresh)


async def _refresh() -> None:
    for refresh in _before_scrape:
        try:
            await asyncio.wait_for(refresh(), _CHECK_TIMEOUT_S)
        except Exception:  # a stale gauge beats a failed scrape
            log.warning("refreshing a gauge before the scrape failed", exc_info=True)


def resource_checks(res: object) -> dict[str, Check]:
    """Readiness checks for a `runtime.Resources`: NATS, and DB / Redis when present."""
    checks: dict[str, Check] = {}
    nc = res.nc  # type: ignore[attr-defined]

    async def nats_ok() -> bool:
        return bool(nc.is_connected)

    checks["nats"] = nats_ok
    engine = getattr(res, "engine", None)
    if engine is not None:

        async def db_ok() -> bool:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True

        checks["db"] = db_ok
    redis = getattr(res, "redis", None)
    if redis is not None:

        async def redis_ok() -> bool:
            return bool(await redis.ping())

        checks["redis"] = redis_ok
    return checks


async def _run_check(check: Check) -> bool:
    try:
        return await asyncio.wait_for(check(), _CHECK_TIMEOUT_S)
    except Exception:
        return False


async def readiness(checks: dict[str, Check]) -> dict[str, bool]:
    results = await asyncio.gather(*(_run_check(c) for c in checks.values()))
    return dict(zip(checks, results, strict=True))


async def _respond(checks: dict[str, Check], path: str) -> tuple[int, bytes, str]:
    if path == "/healthz":
        return 200, b'{"status":"alive"}', "application/json"
    if path == "/readyz":
        results = await readiness(checks)
        ready = all(results.values())
        return (200 if ready else 503), orjson.dumps(results), "application/json"
    if path == "/metrics":
        await _refresh()
        return 200, generate_latest(), CONTENT_TYPE_LATEST
    return 404, b"not found", "text/plain"


async def start(host: str, port: int, checks: dict[str, Check]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            parts = line[:_MAX_REQUEST_LINE].decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 and parts[0] == "GET" else ""
            status, body, kind = await _respond(checks, path)
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    try:
        return await asyncio.start_server(handle, host, port)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or port == 0:
            raise
        log.warning("metrics port %d is taken; picking a free one", port)
        return await asyncio.start_server(handle, host, 0)


def bound_port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


@contextlib.asynccontextmanager
async def serving(
    name: str, host: str, port: int, checks: dict[str, Check]
) -> AsyncIterator[asyncio.Server]:
    server = await start(host, port, checks)
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    log.info("%s metrics on http://%s:%d/metrics", name, shown, bound_port(server))
    try:
        yield server
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
