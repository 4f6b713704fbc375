"""`python -m services.gateway`: serve /ws and the REST face until SIGTERM, then drain."""

import uvicorn

from services.common import tracing
from services.common.runtime import setup_logging

from .app import create_app
from .drain import DrainingServer
from .settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    setup_logging(settings.log_level)
    tracing.setup("gateway")  # OTLP export only when OTEL_EXPORTER_OTLP_ENDPOINT is set
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        ws="websockets-sansio",
        ws_max_size=settings.hard_frame_bytes,
        # permessage-deflate compresses every frame once per socket (the opposite of encoding
        # an event once for all) and keeps ~50 KB of zlib state per connection; measured with
        # scripts/fanout.py at 1,000 members: p99 145 ms and 98 KB/conn with it, 50 ms and
        # 47 KB/conn without. Room events are small JSON; compression does not pay here.
        ws_per_message_deflate=False,
        # The heartbeat is WebSocket protocol pings: browsers answer them without any page
        # code, so a pong proves the connection (not the tab's script) is alive. A socket
        # that misses one for PONG_TIMEOUT_SECONDS is closed and its member shows away.
        ws_ping_interval=settings.heartbeat_interval_seconds,
        ws_ping_timeout=settings.pong_timeout_seconds,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn logs through our handlers, which redact tokens
        access_log=False,
        # After the drain (DrainingServer): in-flight requests and socket handlers finish.
        timeout_graceful_shutdown=10,
    )
    # SIGTERM: every socket gets a `reconnect` frame and a 1012 close before uvicorn stops.
    DrainingServer(config, app).run()


if __name__ == "__main__":
    main()
