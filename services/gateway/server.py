"""uvicorn's configuration for the gateway: HTTP through FastAPI, `/ws` through wsserver."""

from typing import Any

import uvicorn

from .settings import GatewaySettings
from .wsserver import protocol_for


def config_for(app: Any, settings: GatewaySettings, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        # Upgrades go to our own protocol, not through ASGI (see wsserver.py). It runs
        # without permessage-deflate: compression is per socket (the opposite of framing an
        # event once for all) and keeps ~50 KB of zlib state per connection; measured with
        # scripts/fanout.py at 1,000 members it gave p99 145 ms and 98 KB/conn. Room events
        # are small JSON; compression does not pay here.
        # The heartbeat is WebSocket protocol pings: browsers answer them without any page
        # code, so a pong proves the connection (not the tab's script) is alive. A socket
        # that misses one for PONG_TIMEOUT_SECONDS is closed (1011) and its member shows away.
        "ws": protocol_for(
            app,
            max_size=settings.hard_frame_bytes,
            ping_interval_s=settings.heartbeat_interval_seconds,
            pong_timeout_s=settings.pong_timeout_seconds,
        ),
        "log_level": settings.log_level.lower(),
        "log_config": None,  # uvicorn logs through our handlers, which redact tokens
        "access_log": False,
        # After the drain (DrainingServer): in-flight requests finish.
        "timeout_graceful_shutdown": 10,
        "backlog": 4096,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)
