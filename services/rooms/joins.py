"""Joins of one room that wait for its lock go in together (lines.py): one transaction, one
`members` event and one snapshot for all of them.

A join storm (a watch party's link posted somewhere: hundreds join within a minute) costs each
join, alone, its own transaction of a dozen statements, its own `members` event to every member
and its own snapshot that lists the whole room: O(N²) rows read and frames sent for N joins.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.common.contracts.errors import ServiceError
from services.common.contracts.models import UserRef
from services.common.jsonutil import now_ms

from . import repository as repo
from .transaction import RoomTx

# Bounds one transaction's statements (their IN lists and VALUES rows): a longer line of
# joins is taken by the next holders of the lock, in order.
JOINS_PER_TRANSACTION = 100

Authorize = Callable[[RoomTx, UserRef, str], Awaitable[Any]]


@dataclass(slots=True, eq=False)  # each join is itself: found in a line by identity
class Joining:
    """One socket's join, waiting for its room's lock; `done` gets its snapshot or error."""

    user: UserRef
    conn_id: str
    player: bool
    done: asyncio.Future[dict[str, Any]]


async def apply(tx: RoomTx, joins: list[Joining], authorize: Authorize) -> dict[int, ServiceError]:
    """Apply `joins` (authorised one by one) in `tx`, before its commit; the ones refused, by
    their index in `joins`.

    A user may join on several sockets at once (tabs, a phone remote): one membership each,
    under the latest name. A socket that repeats its join keeps one session (the latest
    `player` flag). A member back within the presence timeout (a reconnect) has their dropped
    sockets superseded and keeps their place and role.
    """
    now = now_ms()
    await tx.know_memberships([j.user.id for j in joins])
    refused: dict[int, ServiceError] = {}
    admitted: list[Joining] = []
    for i, joining in enumerate(joins):
        try:
            await authorize(tx, joining.user, "join")
        except ServiceError as exc:
            refused[i] = exc
        else:
            admitted.append(joining)
    if not admitted:
        return refused

    users = {j.user.id: j.user for j in admitted}
    new_members: list[dict[str, Any]] = []
    renamed: set[str] = set()
    for user_id, user in users.items():
        membership = await tx.membership(user_id)
        if membership is None:
            role = "owner" if user_id == tx.row.owner_id else "member"
            new_members.append(
                {
                    "room": tx.code,
                    "user_id": user_id,
                    "name": user.name,
                    "role": role,
                    "joined_at_ms": now,
                    "banned": False,
                }
            )
        elif membership.name != user.name:
            await repo.rename_member(tx.conn, tx.code, user_id, user.name)
            renamed.add(user_id)
    await repo.insert_memberships(tx.conn, new_members)

    sockets = {j.conn_id: j for j in admitted}
    added = await repo.add_sessions(
        tx.conn, tx.code, [(c, j.user.id, j.player) for c, j in sockets.items()], now
    )
    if added:
        tx.active_at(now)
    back = await repo.clear_away(tx.conn, tx.code, list(users))
    touched = {m["user_id"] for m in new_members} | renamed | set(back)
    touched.update(sockets[c].user.id for c in added)
    if touched:
        tx.members_changed(*touched)
    for conn_id in added:
        joining = sockets[conn_id]
        await tx.audit(joining.user, "join", detail={"player": joining.player})
    return refused
