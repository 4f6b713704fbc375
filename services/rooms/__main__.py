"""`python -m services.rooms`: serve the rooms commands until SIGTERM."""

import asyncio

from services.common import runtime, stats

from . import metrics
from .handlers import build_router
from .playback import Timing
from .service import RoomsService
from .settings import RoomsSettings


async def main(stop: asyncio.Event) -> None:
    settings = RoomsSettings()
    async with runtime.lifespan(settings, "rooms") as res:
        assert res.engine is not None
        timing = Timing(
            settings.playback_start_buffer_ms,
            settings.playback_start_timeout_ms,
            settings.ad_max_wait_ms,
        )
        service = RoomsService(res.engine, res.nc, timing)
        router = build_router(service)
        metrics.attach(router, service)
        await router.serve(res.nc, settings.max_inflight)

        async def figures() -> tuple[dict[str, float], dict[str, float]]:
            return {"messages_per_s": router.meter.per_second()}, await service.figures()

        await stats.serve(res.nc, "rooms", stats.instance_id(), figures)
        sweeper = asyncio.create_task(service.sweep(stop, settings.deadline_sweep_interval_s))
        await stop.wait()
        await service.aclose()
        await sweeper


if __name__ == "__main__":
    runtime.run(main, RoomsSettings().log_level)
