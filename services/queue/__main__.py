"""`python -m services.queue`: serve the queue commands until SIGTERM."""

import asyncio

from services.common import runtime

from .handlers import build_router
from .service import QueueService
from .settings import QueueSettings


async def main(stop: asyncio.Event) -> None:
    settings = QueueSettings()
    async with runtime.lifespan(settings, "queue") as res:
        assert res.engine is not None
        service = QueueService(res.engine, res.nc, settings.max_queue_length)
        await build_router(service).serve(res.nc, settings.max_inflight)
        await stop.wait()


if __name__ == "__main__":
    runtime.run(main, QueueSettings().log_level)
