"""Access checks (`st.rooms.cmd.access`) read in batches on PostgreSQL (services/rooms/
access.py): questions asked together are answered by one statement, each with its own
room's and user's answer, and every answer sees what was committed before it was asked."""

import asyncio
import socket

import psycopg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import bus
from services.common.contracts.commands import BanChange, Join, RoleChange
from services.common.contracts.envelope import AccessQuery
from services.common.contracts.errors import ErrorCode, ServiceError
from services.rooms.access import AccessReads
from services.rooms.moderation import Moderation
from tests.support.rooms_service import env, new_room, rooms_service, user

pytestmark = pytest.mark.integration


def _batches() -> tuple[float, float]:
    """(statements, questions) read so far by the access batches."""
    count = REGISTRY.get_sample_value("sharetube_rooms_access_batch_size_count") or 0.0
    total = REGISTRY.get_sample_value("sharetube_rooms_access_batch_size_sum") or 0.0
    return count, total


async def test_questions_asked_together_are_read_together_each_with_its_answer(
    engine: AsyncEngine,
) -> None:
    rooms, _ = rooms_service(engine)
    moderation = Moderation(rooms)
    try:
        owner, operator, member, banned, outsider = (
            user(n) for n in ("owner", "operator", "member", "banned", "outsider")
        )
        first, second = await new_room(rooms, owner), await new_room(rooms, outsider)
        for who in (operator, member, banned):
            await rooms.join(env(who, first, conn=f"c-{who.id}"), Join())
        await moderation.set_role(
            env(owner, first), RoleChange(user_id=operator.id, role="operator")
        )
        await moderation.ban(env(owner, first), BanChange(user_id=banned.id))

        asks = [
            (first, owner, "owner", False),
            (first, operator, "operator", False),
            (first, member, "member", False),
            (first, banned, None, True),
            (first, outsider, None, False),
            (second, outsider, "owner", False),
            (second, member, None, False),
        ] * 8
        before = _batches()
        replies = await asyncio.gather(
            *(rooms.access(AccessQuery(room=room, user_id=who.id)) for room, who, _, _ in asks),
            rooms.access(AccessQuery(room="NOSUCH", user_id=owner.id)),
            return_exceptions=True,
        )
        *answers, missing = replies
        for (room, who, role, is_banned), reply in zip(asks, answers, strict=True):
            assert not isinstance(reply, BaseException), reply
            assert (reply.role, reply.banned) == (role, is_banned), (room, who.name)
            assert reply.member == (role is not None)
        assert isinstance(missing, ServiceError) and missing.code is ErrorCode.NOT_FOUND
        statements, questions = (a - b for a, b in zip(_batches(), before, strict=True))
        assert questions == len(asks) + 1
        assert statements < questions  # asked at once: fewer statements than questions

        # An answer read after a change sees it.
        await moderation.ban(env(owner, first), BanChange(user_id=member.id))
        reply = await rooms.access(AccessQuery(room=first, user_id=member.id))
        assert reply.banned and reply.role is None
    finally:
        await rooms.aclose()


async def test_a_batch_that_gets_no_answer_fails_as_an_outage_and_the_next_one_tries_again() -> (
    None
):
    """A database that accepts the connection and never answers (a stalled server, a lost
    network): the batch fails as an outage (`unavailable`), and later questions are not
    stuck behind it."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)  # the kernel completes the handshake; nothing ever reads or answers
    reads = AccessReads(f"postgresql://postgres@127.0.0.1:{hole.getsockname()[1]}/x", 0.3)
    try:
        for _ in range(2):
            with pytest.raises(psycopg.OperationalError) as failed:
                await asyncio.wait_for(reads.read("ROOM", "user"), 5)
            assert bus.is_outage(failed.value)
    finally:
        await reads.aclose()
        hole.close()
