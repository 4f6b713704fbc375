"""Chat messages committed in groups, by one statement at a time (PostgreSQL).

Sent one statement each, 16 messages in flight kept 16 PostgreSQL backends busy on the
stack's one core; now and then one of them stalled for 1-3 s (a phase of a statement that
takes well under a millisecond), and every later message of its room queued behind it (p99
800 ms, some sends timing out). With one connection per service the stalls were gone. So,
as rooms does for playback controls (services/rooms/controls.py): every message that arrives
while a group is in the database joins the next group, and a group is one autocommitted
statement over arrays (`repository.send_messages`: each room's next version, the messages,
the chat versions and the remembered replies).

A group fails whole when one of its request ids is already remembered (a retried send);
then each of its messages goes alone, which answers the retry
as before. The caller holds the room's lock (`KeyedLocks`), and a group takes one message of
a room at most, so a room's messages keep their order.
"""

import asyncio
import logging
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from prometheus_client import Histogram
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.contracts.models import ChatMessage
from services.common.grouping import OneGroupAtATime

from . import repository as repo

log = logging.getLogger(__name__)

MAX_GROUP = 128  # messages per statement

GROUP_SIZE = Histogram(
    "sharetube_chat_send_group_size",
    "Chat messages stored together in one statement",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)


@dataclass(slots=True)
class Send:
    room: str
    message: ChatMessage
    request_id: str
    reply: dict[str, Any]
    done: asyncio.Future[int | None]  # the message's version; None: no such room


class SendGroups:
    """Stores messages in groups, one group in the database at a time."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine  # autocommit (db.single_statements)
        self._groups = OneGroupAtATime(self._run, attrgetter("room"), MAX_GROUP)

    async def store(
        self, room: str, message: ChatMessage, request_id: str, reply: Any
    ) -> int | None:
        """Store `message` at the room's next version; that version, or None when there is
        no such room. A remembered request id raises IntegrityError."""
        done: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._groups.add(Send(room, message, request_id, reply, done))
        return await done

    async def _run(self, group: list[Send]) -> None:
        GROUP_SIZE.observe(len(group))
        try:
            if len(group) == 1:
                await self._alone(group[0])
                return
            try:
                versions = await self._together(group)
            except IntegrityError:  # a retried send among them: each goes alone
                await asyncio.gather(*(self._alone(send) for send in group))
                return
            for send in group:
                _settle(send, versions.get(send.room))
        except Exception as exc:
            for send in group:
                if not send.done.done():
                    send.done.set_exception(exc)

    async def _together(self, group: list[Send]) -> dict[str, int]:
        async with self._engine.connect() as conn:
            return await repo.send_messages(
                conn, [(s.room, s.message, s.request_id, s.reply) for s in group]
            )

    async def _alone(self, send: Send) -> None:
        try:
            _settle(send, (await self._together([send])).get(send.room))
        except Exception as exc:
            if not send.done.done():
                send.done.set_exception(exc)


def _settle(send: Send, v: int | None) -> None:
    """Answer a stored message, unless its caller has gone (cancelled): the others of its
    group are answered all the same."""
    if not send.done.done():
        send.done.set_result(v)
