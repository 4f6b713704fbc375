"""Players' `ready` reports of one room that wait for its lock go in together (lines.py).

After a seek, a play or a new entry the room is `starting`: every player loads the position
and says `ready`, and the room plays once the last one has (or at its start timeout). Those
reports arrive together, one per player. Alone, each was a transaction of its own under the
room's lock, reading the room's players again each time: at 1,000 players a seek took 3.5 s to
resume and the gateway answered about half of the reports with `timeout`. Together: one
transaction for every report that waited, with one read of the players and of the reporters'
memberships, one write of the room, and the one `playback` event of the last report that
completes the start.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.common.contracts.envelope import CommandEnvelope
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import UserRef
from services.common.jsonutil import now_ms

from . import playback as pb
from .transaction import RoomTx

# Bounds one transaction's statements (the memberships read, the command log's rows): a
# longer line is taken by the next holders of the lock, in order.
READIES_PER_TRANSACTION = 500

Authorize = Callable[[RoomTx, UserRef, str], Awaitable[Any]]


@dataclass(slots=True, eq=False)  # each report is itself: found in a line by identity
class Ready:
    """One player socket's `ready` for an entry, waiting for its room's lock; `done` gets
    its reply or error."""

    env: CommandEnvelope
    conn_id: str
    entry_id: str
    done: asyncio.Future[dict[str, Any]]


def require_player(conn_id: str, players: frozenset[str]) -> None:
    """Reports come from a member's socket that joined the room as a player."""
    if conn_id not in players:
        raise ServiceError(ErrorCode.NOT_MEMBER, "Join the room as a player first.")


async def apply(
    tx: RoomTx, readies: list[Ready], authorize: Authorize, timing: pb.Timing
) -> dict[int, ServiceError]:
    """Apply `readies` in arrival order in `tx`, each authorised on its own, before its
    commit; the ones refused, by their index in `readies`."""
    await tx.know_memberships([r.env.user.id for r in readies])
    players = await tx.players()
    now = now_ms()
    state = tx.playback
    refused: dict[int, ServiceError] = {}
    for i, ready in enumerate(readies):
        try:
            await authorize(tx, ready.env.user, "ready")
            require_player(ready.conn_id, players)
        except ServiceError as exc:
            refused[i] = exc
            continue
        state = pb.mark_ready(state, ready.conn_id, ready.entry_id, players, now, timing)
    tx.set_playback(state)
    return refused
