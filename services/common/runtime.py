"""One lifespan owns a service's connections (STYLE.md point 3).

`Resources` holds NATS, the database engine and Redis, each made by one factory; `lifespan`
opens them in order and closes them in reverse, draining NATS first so in-flight replies go
out before the database goes away. `run` starts a service's main under uvloop and stops it
cleanly on SIGTERM / SIGINT.
"""

import asyncio
import contextlib
import logging
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

from . import bus, db, gcpause, health, metrics, tracing
from .settings import CommonSettings

log = logging.getLogger(__name__)


@dataclass
class Resources:
    nc: NATS
    engine: AsyncEngine | None
    redis: aioredis.Redis | None


REDIS_POOL_SIZE = 32


def redis_client(url: str, timeout_s: float = 2.0) -> aioredis.Redis:
    """The one way a process makes its Redis client. redis-py reconnects by itself on the
    next command after Redis comes back; the retry covers a command caught in the switch,
    and the timeouts keep a stuck Redis from hanging a request (callers treat a Redis error
    as `unavailable`, or fail open where that is safe)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        # Bounded: a storm of sockets opening (each checks its session) waits for a pooled
        # connection instead of opening hundreds at once; measured with scripts/bench.py,
        # 10,000 sockets in 5 s made ~1 % of the checks time out with an unbounded pool.
        max_connections=REDIS_POOL_SIZE,
        timeout=timeout_s,  # waiting for a free connection, then `unavailable`
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=15,  # PING an idle pooled connection before reuse
    )
    return aioredis.Redis.from_pool(pool)  # aclose() closes the pool too


@contextlib.asynccontextmanager
async def lifespan(
    settings: CommonSettings,
    name: str,
    *,
    use_db: bool = True,
    use_redis: bool = False,
    serve_health: bool = True,
) -> AsyncIterator[Resources]:
    """`serve_health` starts /metrics, /healthz, /readyz on METRICS_PORT (the janitor
    serves its own, with its lease in the readiness)."""
    tracing.setup(name)
    engine = db.create_engine(settings.database_url, settings.db_pool_size) if use_db else None
    if engine is not None:
        metrics.instrument_engine(engine)
    redis = redis_client(settings.redis_url) if use_redis else None
    nc = await bus.connect(settings.nats_url, name)
    gcpause.freeze_startup()  # short full collections from here on (gcpause.py)
    try:
        res = Resources(nc=nc, engine=engine, redis=redis)
        if serve_health:
            checks = health.resource_checks(res)
            async with health.serving(name, settings.metrics_host, settings.metrics_port, checks):
                yield res
        else:
            yield res
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()
        if redis is not None:
            await redis.aclose()
        if engine is not None:
            await engine.dispose()


class RedactSecrets(logging.Filter):
    """Tokens travel in the socket URL (`/ws?token=...`); no log line may carry one."""

    _pattern = re.compile(r"(token=|Bearer\s+)[A-Za-z0-9._~+/=-]+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._pattern.sub(r"\1[redacted]", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets())


def run(main: Callable[[asyncio.Event], Awaitable[None]], log_level: str = "INFO") -> None:
    """Run `main(stop)` under uvloop; `stop` is set on SIGTERM / SIGINT."""
    setup_logging(log_level)

    async def _entry() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        import uvloop

        uvloop.run(_entry())
    except ImportError:  # uvloop is Linux/macOS only; asyncio's loop is fine elsewhere
        asyncio.run(_entry())
