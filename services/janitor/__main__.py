"""`python -m services.janitor`: compete for the lease; while leading, run the jobs."""

import asyncio
import contextlib

from services.common import runtime, stats

from . import health
from .jobs import Jobs
from .lease import Lease
from .service import Janitor
from .settings import JanitorSettings


async def main(stop: asyncio.Event) -> None:
    settings = JanitorSettings()
    async with runtime.lifespan(settings, "janitor", use_db=False, use_redis=True) as res:
        assert res.redis is not None
        lease = Lease(
            res.redis, settings.instance_id, int(settings.background_task_lease_seconds * 1000)
        )
        janitor = Janitor(
            lease,
            Jobs(res.nc, res.redis, settings),
            settings.presence_sweep_interval_seconds,
            settings.maintenance_interval_seconds,
        )

        async def figures() -> tuple[dict[str, float], dict[str, float]]:
            return {"leader": 1.0 if janitor.leading else 0.0}, {}

        await stats.serve(res.nc, "janitor", settings.instance_id, figures)
        server = None
        if settings.metrics_port:
            server = await health.serve(
                settings.metrics_host,
                settings.metrics_port,
                lambda: res.nc.is_connected and janitor.redis_ok,
            )
        try:
            await janitor.run(stop)
        finally:
            if server is not None:
                server.close()
                with contextlib.suppress(Exception):
                    await server.wait_closed()


if __name__ == "__main__":
    runtime.run(main, JanitorSettings().log_level)
