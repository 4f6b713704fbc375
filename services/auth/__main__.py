"""`python -m services.auth`: serve the auth commands until SIGTERM."""

import asyncio

from services.common import runtime

from .handlers import build_router
from .service import AuthService
from .settings import AuthSettings


async def main(stop: asyncio.Event) -> None:
    settings = AuthSettings()
    async with runtime.lifespan(settings, "auth") as res:
        assert res.engine is not None
        service = AuthService(
            res.engine, settings.jwt_secret, settings.access_token_expires_seconds
        )
        await build_router(service).serve(res.nc, settings.max_inflight)
        await stop.wait()


if __name__ == "__main__":
    runtime.run(main, AuthSettings().log_level)
