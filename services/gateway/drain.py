"""Graceful shutdown: tell every client to reconnect elsewhere, close, then let uvicorn stop.

On SIGTERM uvicorn would close open sockets itself with 1012 and no word of why. Before that,
`drain` sends each socket a `reconnect` frame (`{"type": "reconnect", "data": {"reason",
"within_ms"}}`), closes it with 1012 once the frame is written, and waits (bounded) until
the sockets are gone, so their sessions are marked away in rooms while the bus is still up.
Clients reconnect through the load balancer to another gateway, re-join (which clears the
away sessions) and retry unanswered commands with the same request ids.
"""

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import uvicorn

from services.common.contracts import events
from services.common.contracts.errors import CloseCode

if TYPE_CHECKING:
    from .app import GatewayState

log = logging.getLogger(__name__)


async def drain(gw: "GatewayState") -> None:
    if gw.draining:
        return
    gw.draining = True  # /readyz says no, and new sockets are turned away the same way
    settings = gw.settings
    conns = list(gw.connections)
    started = time.monotonic()
    hint = events.reconnect(settings.drain_spread_ms)
    for conn in conns:
        conn.send(hint)
        conn.close_after_flush(CloseCode.SERVICE_RESTART, "server restarting")
    deadline = started + settings.drain_timeout_seconds
    # Polled: the set of sockets has no change event, and this runs once, for seconds.
    while gw.connections and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    log.info(
        "drained %d sockets in %.2f s (%d left)",
        len(conns),
        time.monotonic() - started,
        len(gw.connections),
    )


class DrainingServer(uvicorn.Server):
    """uvicorn's server, draining the gateway's sockets before its own shutdown."""

    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: Any = None) -> None:
        gw = getattr(self._app.state, "gw", None)
        if gw is not None:
            try:
                await drain(gw)
            except Exception:
                log.exception("drain failed; closing the sockets as they are")
        await super().shutdown(sockets)
