"""`python -m services.chat`: serve the chat commands until SIGTERM."""

import asyncio

from services.common import runtime, stats

from . import metrics
from .handlers import build_router
from .ratelimit import SlidingWindowLimiter
from .service import ChatService
from .settings import ChatSettings


async def main(stop: asyncio.Event) -> None:
    settings = ChatSettings()
    async with runtime.lifespan(settings, "chat", use_redis=True) as res:
        assert res.engine is not None and res.redis is not None
        limiter = SlidingWindowLimiter(
            res.redis,
            settings.chat_rate_limit_messages,
            round(settings.chat_rate_limit_window_s * 1000),
        )
        service = ChatService(res.engine, res.nc, limiter)
        router = build_router(service)
        metrics.attach(router)
        await router.serve(res.nc, settings.max_inflight)

        async def figures() -> tuple[dict[str, float], dict[str, float]]:
            return {"messages_per_s": router.meter.per_second()}, {}

        await stats.serve(res.nc, "chat", stats.instance_id(), figures)
        await stop.wait()
        await service.aclose()


if __name__ == "__main__":
    runtime.run(main, ChatSettings().log_level)
