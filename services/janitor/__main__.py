"""`python -m services.janitor`: compete for the lease; while leading, run the jobs."""

import asyncio

from services.common import health, runtime, stats

from .jobs import Jobs
from .lease import Lease
from .service import Janitor
from .settings import JanitorSettings


async def main(stop: asyncio.Event) -> None:
    settings = JanitorSettings()
    # /metrics, /healthz, /readyz are served here rather than by the lifespan: readiness
    # includes the lease loop's own view of Redis (a standby waiting is ready too).
    async with runtime.lifespan(
        settings, "janitor", use_db=False, use_redis=True, serve_health=False
    ) as res:
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

        async def lease_loop_ok() -> bool:
            return janitor.redis_ok

        await stats.serve(res.nc, "janitor", settings.instance_id, figures)
        checks = {**health.resource_checks(res), "lease": lease_loop_ok}
        async with health.serving("janitor", settings.metrics_host, settings.metrics_port, checks):
            await janitor.run(stop)


if __name__ == "__main__":
    runtime.run(main, JanitorSettings().log_level)
