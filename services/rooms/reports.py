"""Players' reports of one room that wait for its lock go in together (lines.py): `ready`,
`ad.start` and `ad.end`.

After a seek, a play or a new entry the room is `starting`: every player loads the position
and says `ready` (or that an ad came first, then that it ended), and the room plays once the
last one is ready (or at its start timeout). Those reports arrive together, one or more per
player. Alone, each was a transaction of its own under the room's lock, reading the room's
players again each time: at 1,000 players a seek took 4.2-4.4 s to resume, which was the start
timeout, and the gateway answered a quarter of the reports with `timeout`. Together: one
transaction for every report that waited, with one read of the players and of the reporters'
memberships, each report applied in arrival order, one write of the room, and the events of
whatever the room's playback became.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.common.contracts.envelope import CommandEnvelope
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import AdSyncPolicy, UserRef
from services.common.jsonutil import now_ms

from . import playback as pb
from .permissions import Standing
from .transaction import RoomTx

# Bounds one transaction's statements (the memberships read, the command log's rows): a
# longer line is taken by the next holders of the lock, in order.
REPORTS_PER_TRANSACTION = 500

Authorize = Callable[[RoomTx, UserRef, str], Awaitable[Standing]]


@dataclass(slots=True, eq=False)  # each report is itself: found in a line by identity
class Report:
    """One player socket's report about an entry (`entry_id`: required for `ready`, optional
    for the ads), waiting for its room's lock; `done` gets its reply or error."""

    env: CommandEnvelope
    command: str  # "ready", "ad.start" or "ad.end"; or "ended", in lines of its own
    conn_id: str
    entry_id: str | None
    done: asyncio.Future[dict[str, Any]]


def require_player(conn_id: str, players: frozenset[str]) -> None:
    """Reports come from a member's socket that joined the room as a player."""
    if conn_id not in players:
        raise ServiceError(ErrorCode.NOT_MEMBER, "Join the room as a player first.")


def step(
    state: pb.PlaybackState,
    report: Report,
    standing: Standing,
    players: frozenset[str],
    policy: AdSyncPolicy,
    now: int,
    timing: pb.Timing,
) -> tuple[pb.PlaybackState, dict[str, Any]]:
    """One authorised report's transition, and its reply."""
    conn = report.conn_id
    if report.command == "ready":
        return pb.mark_ready(state, conn, report.entry_id or "", players, now, timing), {}
    if report.entry_id is not None and report.entry_id != state.entry_id:
        return state, {"counted": False}  # about an entry the room has moved on from
    if report.command == "ad.end":
        return pb.ad_end(state, conn, players, now, timing), {"counted": conn in state.ads}
    if not pb.ad_counts(policy, standing in ("owner", "operator")):
        return state, {"counted": False}
    after = pb.ad_start(state, conn, policy, now, timing)
    return after, {"counted": conn in after.ads}


async def authorize_each(
    tx: RoomTx, reports: list[Report], authorize: Authorize
) -> tuple[dict[int, ServiceError], list[Standing | None]]:
    """Each report authorised on its own, the reporters' memberships read in one statement:
    the refusals by index in `reports`, and each reporter's standing (None where refused)."""
    await tx.know_memberships([r.env.user.id for r in reports])
    refused: dict[int, ServiceError] = {}
    standings: list[Standing | None] = []
    for i, report in enumerate(reports):
        try:
            standings.append(await authorize(tx, report.env.user, report.command))
        except ServiceError as exc:
            refused[i] = exc
            standings.append(None)
    return refused, standings


async def apply(
    tx: RoomTx, reports: list[Report], authorize: Authorize, timing: pb.Timing
) -> tuple[dict[int, ServiceError], list[dict[str, Any] | None]]:
    """Apply `reports` in arrival order in `tx`, each authorised on its own, before its
    commit: the ones refused, by their index in `reports`, and every report's reply (None
    where refused)."""
    refused, standings = await authorize_each(tx, reports, authorize)
    players = await tx.players()
    now = now_ms()
    state, policy = tx.playback, tx.settings.ad_sync
    replies: list[dict[str, Any] | None] = []
    for i, (report, standing) in enumerate(zip(reports, standings, strict=True)):
        reply = None
        if standing is not None:
            try:
                require_player(report.conn_id, players)
            except ServiceError as exc:
                refused[i] = exc
            else:
                state, reply = step(state, report, standing, players, policy, now, timing)
        replies.append(reply)
    tx.set_playback(state)
    return refused, replies
