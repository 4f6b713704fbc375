"""`python -m services.gateway`: serve /ws and the REST face until SIGTERM."""

import uvicorn

from services.common.runtime import setup_logging

from .app import create_app
from .settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    setup_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        ws="websockets-sansio",
        ws_max_size=settings.hard_frame_bytes,
        # Keepalive pings are the gateway's own heartbeat (HEARTBEAT_INTERVAL_SECONDS).
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn logs through our handlers, which redact tokens
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
