"""What every gateway hears besides room events: evictions, and requests for its figures.

`st.gateway.evt.evict` names the sockets of a kicked or banned user, or (a closed room) every
socket in the room; the gateway holding them takes them out of the room's channel (so they
receive none of its events any more) and tells each socket with an `evicted` frame.
`st.stats.gather` asks for this gateway's figures.
"""

import logging
from typing import TYPE_CHECKING

from nats.aio.msg import Msg

from services.common import stats
from services.common.contracts import events, subjects
from services.common.contracts.envelope import EvictNotice

if TYPE_CHECKING:
    from .app import GatewayState

log = logging.getLogger(__name__)


async def evict(gw: "GatewayState", notice: EvictNotice) -> int:
    """Take the named sockets (all, for a closed room) out of the room; returns how many
    were here."""
    wanted = None if notice.conns is None else set(notice.conns)
    room = notice.room
    named = [c for c in gw.connections if wanted is None or c.conn_id in wanted]
    frame = events.evicted(room, notice.reason)
    count = 0
    for conn in named:
        inside, joining = room in conn.rooms, conn.holds(room)
        if not (inside or joining):
            continue
        if inside:
            conn.rooms.discard(room)
            await gw.hub.remove(conn, room)
        if joining:
            # A join under way (its rooms part already read): refused when its snapshot is
            # in, so it neither enters the room nor gets the events held for it.
            conn.evicted_while_joining(room)
        conn.send(frame)
        count += 1
    return count


async def start(gw: "GatewayState") -> None:
    """Subscribe for the gateway's lifetime (draining NATS at shutdown ends both)."""

    async def on_notice(msg: Msg) -> None:
        if msg.subject != subjects.gateway_notice("evict"):
            return
        try:
            notice = EvictNotice.model_validate_json(msg.data)
        except ValueError:
            log.warning("bad notice on %s", msg.subject)
            return
        if await evict(gw, notice):
            who = notice.user_id or "every socket"
            log.info("evicted %s from %s (%s)", who, notice.room, notice.reason)

    async def figures() -> tuple[dict[str, float], dict[str, float]]:
        return {
            "connections": float(len(gw.connections)),
            "rooms": float(gw.hub.room_count),
            "messages_per_s": gw.frames.per_second(),
            "events_per_s": gw.hub.events.per_second(),
        }, {}

    await gw.nc.subscribe(subjects.GATEWAY_NOTICES, cb=on_notice)
    await stats.serve(gw.nc, "gateway", gw.settings.gateway_id, figures)
