"""`python -m services.auth`: serve the auth commands until SIGTERM."""

import asyncio

from services.common import runtime, stats

from . import metrics
from .google import GoogleConfig, GoogleSignIn
from .handlers import build_router
from .oidc import OidcClient
from .service import AuthService
from .settings import AuthSettings


async def main(stop: asyncio.Event) -> None:
    settings = AuthSettings()
    async with runtime.lifespan(settings, "auth", use_redis=True) as res:
        assert res.engine is not None and res.redis is not None
        expires_s = settings.access_token_expires_seconds
        service = AuthService(res.engine, res.redis, res.nc, settings.jwt_secret, expires_s)
        oidc = (
            OidcClient(
                settings.oidc_issuer,
                settings.google_client_id,
                settings.google_client_secret,
                settings.oidc_http_timeout_s,
            )
            if settings.google_enabled
            else None
        )
        config = GoogleConfig(
            jwt_secret=settings.jwt_secret,
            expires_s=expires_s,
            backend_base_url=settings.backend_base_url,
            extension_origins=settings.extension_origins,
            admins=settings.admins,
            state_ttl_s=settings.oidc_state_ttl_s,
        )
        google = GoogleSignIn(res.engine, res.redis, oidc, config)
        router = build_router(service, google)
        metrics.attach(router)
        await router.serve(res.nc, settings.max_inflight)

        async def figures() -> tuple[dict[str, float], dict[str, float]]:
            return {"messages_per_s": router.meter.per_second()}, {}

        await stats.serve(res.nc, "auth", stats.instance_id(), figures)
        await stop.wait()


if __name__ == "__main__":
    runtime.run(main, AuthSettings().log_level)
