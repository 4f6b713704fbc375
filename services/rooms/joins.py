"""Joins of one room that wait for its lock go in together (lines.py): one transaction, one
`members` event and one snapshot for all of them.

A join storm (a watch party's link posted somewhere: hundreds join within a minute) costs each
join, alone, its own transaction of a dozen statements, its own `members` event to every member
and its own snapshot that lists the whole room: O(N²) rows read and frames sent for N joins.

Joins that merely arrive close together do not wait for each other on an idle lock, though, and
in a big room the `members` event of each is what costs: one frame to each of N members. So a
join into a room this replica last saw with `LINGER_FROM_MEMBERS` members or more waits
`LINGER_S` in its line before taking the lock (`Lingering`): the joins of that window go in
together, and N members get one event for all of them. A join into a small room waits for
nothing.
"""

import asyncio
from collections import OrderedDict
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

# A join into a room of this many members or more waits this long for the joins right behind
# it: at 1,000 members a `members` event costs the gateways about 7 ms of sends.
LINGER_FROM_MEMBERS = 200
LINGER_S = 0.05
ROOMS_REMEMBERED = 10_000  # rooms whose size is remembered (the big ones only)

Authorize = Callable[[RoomTx, UserRef, str], Awaitable[Any]]


class Lingering:
    """The rooms this replica last saw big: how long a join into each should wait."""

    def __init__(self, from_members: int = LINGER_FROM_MEMBERS, linger_s: float = LINGER_S) -> None:
        self.from_members = from_members
        self.linger_s = linger_s
        self._big: OrderedDict[str, None] = OrderedDict()

    def saw(self, code: str, members: int) -> None:
        """A join transaction listed the room with `members` members."""
        if members >= self.from_members:
            self._big[code] = None
            self._big.move_to_end(code)
            if len(self._big) > ROOMS_REMEMBERED:
                self._big.popitem(last=False)
        else:
            self._big.pop(code, None)

    def wait_s(self, code: str) -> float:
        return self.linger_s if code in self._big else 0.0


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
    sockets = {j.conn_id: j for j in admitted}
    added, back = await repo.join_sockets(
        tx.conn,
        tx.code,
        new_members,
        [(c, j.user.id, j.player) for c, j in sockets.items()],
        list(users),
        now,
    )
    if added:
        tx.active_at(now)
    touched = {m["user_id"] for m in new_members} | renamed | set(back)
    touched.update(sockets[c].user.id for c in added)
    if touched:
        tx.members_changed(*touched)
    for conn_id in added:
        joining = sockets[conn_id]
        await tx.audit(joining.user, "join", detail={"player": joining.player})
    return refused
