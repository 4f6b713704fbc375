"""Joins of one room that wait for its lock go in together: one transaction, one `members`
event and one snapshot for all of them.

A join storm (a watch party's link posted somewhere: hundreds join within a minute) costs each
join, alone, its own transaction of a dozen statements, its own `members` event to every member
and its own snapshot that lists the whole room: O(N²) rows read and frames sent for N joins.
Every join that arrives while the room's lock is held waits here, and the next holder applies
all of them at once (the combining lock of a group commit: no timer, no added wait).
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


class WaitingJoins:
    """Joins waiting for their room's lock, by room, in arrival order, in lines: a command
    other than a join that waits for the lock too ends the line (`barrier`), so a join that
    arrived after it is not applied before it (a socket's `leave` then `join` stay in order).
    """

    def __init__(self) -> None:
        self._rooms: dict[str, list[list[Joining]]] = {}

    def add(self, code: str, joining: Joining) -> None:
        self._rooms.setdefault(code, [[]])[-1].append(joining)

    def barrier(self, code: str) -> None:
        """Another command of the room arrived: joins after it form a new line."""
        lines = self._rooms.get(code)
        if lines is not None and lines[-1]:
            lines.append([])

    def take(self, code: str, joining: Joining) -> list[Joining]:
        """The joins to apply with `joining` (the holder of the room's lock): its line, oldest
        first, at most JOINS_PER_TRANSACTION; nothing when an earlier holder took it along."""
        lines = self._rooms.get(code, [])
        for i, line in enumerate(lines):
            if joining in line:
                taken, line[:] = line[:JOINS_PER_TRANSACTION], line[JOINS_PER_TRANSACTION:]
                if joining not in taken:  # the lock is FIFO, so it heads its line; if not,
                    taken.append(joining)  # it goes now all the same
                    line.remove(joining)
                self._tidy(code, i)
                return taken
        return []

    def drop(self, code: str, joining: Joining) -> None:
        """A join whose caller gave up before it was taken is not applied."""
        for i, line in enumerate(self._rooms.get(code, [])):
            if joining in line:
                line.remove(joining)
                self._tidy(code, i)
                return

    def _tidy(self, code: str, i: int) -> None:
        """Forget line `i` once empty, unless it is the open line after a barrier."""
        lines = self._rooms[code]
        if not lines[i] and (i < len(lines) - 1 or len(lines) == 1):
            del lines[i]
        if not lines or lines == [[]]:
            del self._rooms[code]


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
