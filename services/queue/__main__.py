"""`python -m services.queue`: serve the queue commands until SIGTERM."""

import asyncio

from services.common import runtime, stats

from . import metrics
from .handlers import build_router
from .service import QueueService
from .settings import QueueSettings


async def main(stop: asyncio.Event) -> None:
    settings = QueueSettings()
    async with runtime.lifespan(settings, "queue") as res:
        assert res.engine is not None
        service = QueueService(res.engine, res.nc, settings.max_queue_length)
        router = build_router(service)
        metrics.attach(router)
        await router.serve(res.nc, settings.max_inflight)

        async def figures() -> tuple[dict[str, float], dict[str, float]]:
            return {"messages_per_s": router.meter.per_second()}, {}

        await stats.serve(res.nc, "queue", stats.instance_id(), figures)
        await stop.wait()
        await service.aclose()


if __name__ == "__main__":
    runtime.run(main, QueueSettings().log_level)
