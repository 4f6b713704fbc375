"""The janitor's loop: compete for the lease, and while leading run the jobs on their beats.

Every replica runs this. The one holding the lease runs the jobs; the others wait for the
lease to expire (they sleep exactly until then, so a takeover comes within one lease of the
leader's last renewal). A leader that cannot renew (Redis away) steps down before its lease
could have expired, so two leaders overlap only if a clock or a pause lies, and the jobs are
safe even then.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from services.common import bus
from services.common.contracts.errors import ServiceError

from . import metrics
from .jobs import Jobs
from .lease import Lease

log = logging.getLogger(__name__)

# Short enough to notice a dead leader quickly when it holds no key, long enough to keep a
# standby's Redis traffic at a few reads a second.
_MIN_WAIT_S = 0.05


class Janitor:
    def __init__(
        self,
        lease: Lease,
        jobs: Jobs,
        presence_interval_s: float,
        maintenance_interval_s: float,
    ) -> None:
        self.lease = lease
        self.jobs = jobs
        self.presence_interval_s = presence_interval_s
        self.maintenance_interval_s = maintenance_interval_s
        self.leading = False
        self.redis_ok = False
        self._renew_every_s = lease.lease_ms / 3000
        self._last_renewal = 0.0  # monotonic time of the last renewal that succeeded
        self._work: asyncio.Task[None] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                wait_s = await self._step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait_s)
        finally:
            await self._step_down("shutting down")
            with contextlib.suppress(RedisError, OSError):
                await self.lease.release()

    async def _step(self) -> float:
        """One turn: take or keep the lease; returns how long to wait before the next."""
        try:
            held = await (self.lease.renew() if self.leading else self.lease.acquire())
            self.redis_ok = True
        except (RedisError, OSError) as exc:
            self.redis_ok = False
            log.warning("lease: redis unavailable: %r", exc)
            # Keep leading only while the lease we last renewed cannot have expired.
            lease_s = self.lease.lease_ms / 1000
            if self.leading and time.monotonic() - self._last_renewal > lease_s * 2 / 3:
                await self._step_down("cannot renew the lease")
            return self._renew_every_s / 2
        if held:
            self._last_renewal = time.monotonic()
            if not self.leading:
                self._become_leader()
            return self._renew_every_s
        if self.leading:
            await self._step_down("the lease was taken over")
        try:
            remaining_s = await self.lease.remaining_ms() / 1000
        except (RedisError, OSError):
            return self._renew_every_s / 2
        # Try again the moment it expires (a dead leader's lease), at least now and then.
        return max(_MIN_WAIT_S, min(remaining_s, self._renew_every_s))

    def _become_leader(self) -> None:
        self.leading = True
        metrics.LEADER.set(1)
        metrics.LEADER_CHANGES.inc()
        log.info("became the janitor leader (%s)", self.lease.holder)
        self._work = asyncio.create_task(self._lead())

    async def _step_down(self, why: str) -> None:
        if not self.leading:
            return
        self.leading = False
        metrics.LEADER.set(0)
        log.warning("no longer the janitor leader: %s", why)
        self.jobs.forget()
        if self._work is not None:
            self._work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._work
            self._work = None

    async def _lead(self) -> None:
        """The jobs on their beats, while leading (cancelled on stepping down)."""
        next_maintenance = time.monotonic() + min(self.maintenance_interval_s, 5.0)
        while True:
            await run_job("presence", self.jobs.presence)
            if time.monotonic() >= next_maintenance:
                for name, job in self.jobs.maintenance():
                    await run_job(name, job)
                next_maintenance = time.monotonic() + self.maintenance_interval_s
            await asyncio.sleep(self.presence_interval_s)


async def run_job(name: str, job: Callable[[], Awaitable[Any]]) -> bool:
    """Run one job; a failure (a service away, Redis away) is logged and counted, and the
    job simply runs again on its next beat."""
    started = time.perf_counter()
    try:
        result = await job()
    except asyncio.CancelledError:
        raise
    except ServiceError as exc:
        metrics.JOB_RUNS.labels(name, "error").inc()
        log.warning("job %s: %s", name, exc.code)
        return False
    except Exception as exc:
        metrics.JOB_RUNS.labels(name, "error").inc()
        if bus.is_outage(exc):  # Redis (or a database) restarting: the next beat retries
            log.warning("job %s: %r", name, exc)
        else:
            log.exception("job %s failed", name)
        return False
    finally:
        metrics.JOB_DURATION.labels(name).observe(time.perf_counter() - started)
    metrics.JOB_RUNS.labels(name, "ok").inc()
    if result:
        log.debug("job %s: %s", name, result)
    return True
