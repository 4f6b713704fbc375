"""Playback controls committed in groups (services/rooms/controls.py) on real PostgreSQL:
concurrent controls on many rooms share one transaction and each still gets its own reply,
event, audit entry and idempotency record; a refused control, a retried request id and a room
that is gone are answered as the ordinary path answers them; one room's controls keep their
arrival order."""

import asyncio
import uuid
from typing import Any

import orjson
import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import sequencer
from services.common.contracts import events
from services.common.contracts.commands import Join, RateChange, Seek, SettingsUpdate
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import UserRef
from services.rooms import controls
from services.rooms.models import RoomAudit, RoomsCommand
from services.rooms.service import RoomsService
from tests.support.rooms_service import Bus, env, loaded, new_room, rooms_service, user

pytestmark = pytest.mark.integration


def playback_events(bus: Bus, code: str) -> list[dict[str, Any]]:
    subject = events.subject_for("playback", code)
    return [orjson.loads(p) for s, p in bus.published if s == subject]


def group_sizes() -> dict[float, float]:
    """The group-size histogram's cumulative bucket counts, by upper bound."""
    (metric,) = controls.GROUP_SIZE.collect()
    return {float(s.labels["le"]): s.value for s in metric.samples if s.name.endswith("_bucket")}


def left_alone() -> dict[str, float]:
    (metric,) = controls.LEFT_ALONE.collect()
    return {s.labels["reason"]: s.value for s in metric.samples if s.name.endswith("_total")}


async def count(engine: AsyncEngine, table: Any, **where: str) -> int:
    stmt = select(func.count()).select_from(table)
    for column, value in where.items():
        stmt = stmt.where(getattr(table.c, column) == value)
    async with engine.connect() as conn:
        return int((await conn.execute(stmt)).scalar_one())


async def seeks_audited(engine: AsyncEngine, code: str, column: Any) -> list[Any]:
    """`column` of the room's audited seeks."""
    where = (RoomAudit.room == code, RoomAudit.action == "seek")
    async with engine.connect() as conn:
        return list((await conn.execute(select(column).where(*where))).scalars())


async def test_concurrent_controls_share_a_transaction(engine: AsyncEngine) -> None:
    rooms, bus = rooms_service(engine)
    assert rooms.controls is not None, "PostgreSQL commits controls in groups"
    owners = [user(f"owner{i}") for i in range(12)]
    codes = [await loaded(rooms, owner) for owner in owners]
    before, alone_before = group_sizes(), left_alone()
    seeks = [
        rooms.seek(env(owner, code, conn=f"c{i}"), Seek(position_ms=1000 * (i + 1)))
        for i, (owner, code) in enumerate(zip(owners, codes, strict=True))
    ]
    replies = await asyncio.gather(*seeks)
    after = group_sizes()
    assert left_alone() == alone_before, "every control was applied in its group"
    # At least one group held more than one control (the first may go alone).
    assert after[1.0] - before.get(1.0, 0) < len(codes), (before, after)
    for i, (reply, code) in enumerate(zip(replies, codes, strict=True)):
        assert reply["playback"]["position_ms"] == 1000 * (i + 1)
        (event,) = playback_events(bus, code)
        assert event["data"] == reply["playback"]
        async with engine.connect() as conn:
            assert event["v"] == await sequencer.current(conn, code)
        assert await count(engine, RoomAudit.__table__, room=code, action="seek") == 1
    for owner in owners:
        assert await count(engine, RoomsCommand.__table__, user_id=owner.id, command="seek") == 1
    await rooms.aclose()


async def test_one_rooms_controls_keep_their_order(engine: AsyncEngine) -> None:
    rooms, bus = rooms_service(engine)
    owner = user("owner")
    code = await new_room(rooms, owner)
    rates = [1.25, 1.5, 0.75, 2.0, 1.0, 0.5]
    await asyncio.gather(
        *(rooms.rate(env(owner, code, conn="c"), RateChange(rate=r)) for r in rates)
    )
    seen = [e["data"]["rate"] for e in playback_events(bus, code)]
    assert seen == rates
    vs = [e["v"] for e in playback_events(bus, code)]
    assert vs == sorted(vs) and len(set(vs)) == len(vs)
    await rooms.aclose()


async def test_a_retried_request_is_applied_once(engine: AsyncEngine) -> None:
    rooms, bus = rooms_service(engine)
    owner, other = user("owner"), user("other")
    code, other_code = await loaded(rooms, owner), await loaded(rooms, other)
    first = env(owner, code, conn="c")
    reply = await rooms.seek(first, Seek(position_ms=5000))
    failed_before = left_alone().get("group_failed", 0)
    # The retry's group fails on the remembered request id, and the ordinary path answers
    # it with the remembered reply; another room's control beside it is applied as usual.
    retried, fresh = await asyncio.gather(
        rooms.seek(first, Seek(position_ms=5000)),
        rooms.seek(env(other, other_code, conn="d"), Seek(position_ms=7000)),
    )
    assert retried == reply
    assert left_alone()["group_failed"] > failed_before
    assert fresh["playback"]["position_ms"] == 7000
    assert len(playback_events(bus, code)) == 1
    assert len(playback_events(bus, other_code)) == 1
    assert await count(engine, RoomAudit.__table__, room=code, action="seek") == 1
    await rooms.aclose()


async def test_refused_and_missing_get_the_ordinary_errors(engine: AsyncEngine) -> None:
    rooms, bus = rooms_service(engine)
    owner, member = user("owner"), user("member")
    code = await loaded(rooms, owner)
    await rooms.update_settings(env(owner, code), SettingsUpdate(control_mode="owner_only"))
    await rooms.join(env(member, code, conn="m"), Join())
    results = await asyncio.gather(
        rooms.seek(env(member, code, conn="m"), Seek(position_ms=1)),
        rooms.pause(env(owner, "nosuchroom", conn="o"), None),
        rooms.seek(env(user("outsider"), code, conn="x"), Seek(position_ms=2)),
        return_exceptions=True,
    )
    codes = [r.code if isinstance(r, ServiceError) else r for r in results]
    assert codes == [ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND, ErrorCode.NOT_MEMBER]
    assert playback_events(bus, code) == []
    await rooms.aclose()


async def test_play_in_an_idle_room_asks_the_queue(engine: AsyncEngine) -> None:
    """`play` with nothing loaded leaves the group for the queue (none answers here)."""
    rooms, _bus = rooms_service(engine)
    owner = user("owner")
    code = await new_room(rooms, owner)
    asked: list[str] = []

    async def advance(*args: Any, **kwargs: Any) -> dict[str, Any]:
        asked.append(code)
        raise ServiceError(ErrorCode.QUEUE_EMPTY)

    rooms._advance = advance  # type: ignore[method-assign]
    with pytest.raises(ServiceError) as refused:
        await rooms.play(env(owner, code, conn="c"), None)
    assert refused.value.code is ErrorCode.QUEUE_EMPTY
    assert asked == [code]
    await rooms.aclose()


async def test_a_handed_off_control_takes_no_transaction_of_its_own(
    engine: AsyncEngine,
) -> None:
    """`play` in an idle room is answered by its group at once, for the queue: the ordinary
    path does not run a transaction of its own only to find the room idle again."""
    rooms, _bus = rooms_service(engine)
    assert rooms.controls is not None
    owner = user("owner")
    code = await new_room(rooms, owner)
    ordinary = rooms.controls._alone
    alone: list[str] = []

    async def counted(control: controls.Control) -> dict[str, Any]:
        alone.append(control.command)
        return await ordinary(control)

    async def advance(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise ServiceError(ErrorCode.QUEUE_EMPTY)

    rooms.controls._alone = counted
    rooms._advance = advance  # type: ignore[method-assign]
    before = left_alone()
    with pytest.raises(ServiceError) as refused:
        await rooms.play(env(owner, code, conn="c"), None)
    assert refused.value.code is ErrorCode.QUEUE_EMPTY
    assert alone == []
    assert left_alone() == before
    await rooms.aclose()


async def test_what_a_group_leaves_alone_does_not_hold_up_the_next_group(
    engine: AsyncEngine,
) -> None:
    """A refused control goes to the ordinary path in a task of its own: while that path is
    still under way, the next group (another room's seek) commits and is answered."""
    rooms, _bus = rooms_service(engine)
    assert rooms.controls is not None
    owner, member = user("owner"), user("member")
    strict, other = await loaded(rooms, owner), await loaded(rooms, owner)
    await rooms.update_settings(env(owner, strict), SettingsUpdate(control_mode="owner_only"))
    await rooms.join(env(member, strict, conn="m"), Join())
    ordinary = rooms.controls._alone
    entered, release = asyncio.Event(), asyncio.Event()

    async def held(control: controls.Control) -> dict[str, Any]:
        entered.set()
        await release.wait()
        return await ordinary(control)

    rooms.controls._alone = held
    refused = asyncio.create_task(rooms.seek(env(member, strict, conn="m"), Seek(position_ms=1)))
    await asyncio.wait_for(entered.wait(), 10)
    reply = await asyncio.wait_for(
        rooms.seek(env(owner, other, conn="o"), Seek(position_ms=2000)), 10
    )
    assert reply["playback"]["position_ms"] == 2000
    assert not refused.done()
    release.set()
    with pytest.raises(ServiceError) as forbidden:
        await asyncio.wait_for(refused, 10)
    assert forbidden.value.code is ErrorCode.FORBIDDEN
    await rooms.aclose()


def test_sqlite_has_no_groups() -> None:
    class SqliteEngine:
        class dialect:
            name = "sqlite"

    rooms = RoomsService(SqliteEngine(), None, None)  # type: ignore[arg-type]
    assert rooms.controls is None


MANY_ROOMS = 3000  # where the generic plans turned to sequential scans before


async def test_a_groups_statements_find_their_rows_by_key_among_many_rooms(
    engine: AsyncEngine,
) -> None:
    """The committer's connections plan each statement once for every group (generic
    plans), costed for 10-100 rows a group: with a few thousand rooms such a plan read whole
    tables into hash joins, so a control cost more with every room. It must use the keys."""
    rooms, _bus = rooms_service(engine)
    assert rooms.controls is not None
    code = await loaded(rooms, user("owner"))
    prefix = f"zz{code[:4]}"
    async with engine.begin() as conn:
        for table, key in (("rooms_rooms", "code"), ("room_seq", "room")):
            await conn.exec_driver_sql(
                f"INSERT INTO {table} SELECT (jsonb_populate_record(t, jsonb_build_object("
                f"'{key}', '{prefix}' || g))).* FROM {table} t, generate_series(1, {MANY_ROOMS}) g "
                f"WHERE t.{key} = %(code)s",
                {"code": code},
            )
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("ANALYZE room_seq, rooms_rooms")
            await conn.commit()
        pg = await rooms.controls._connect()
        try:
            plans = {}
            # The statements the committer prepared, with the plans its EXECUTEs use.
            for name, arguments in (
                ("rooms_lock", f"'{{{code}}}'"),
                ("rooms_read", f"'{{{code}}}', '{{u}}'"),
                ("rooms_write", "'[]', '[]', '[]', '[]'"),
            ):
                cur = await pg.execute(f"EXPLAIN EXECUTE {name}({arguments})")
                plans[name] = "\n".join(row[0] for row in await cur.fetchall())
        finally:
            await pg.close()
        for name, plan in plans.items():
            assert "Seq Scan" not in plan, f"{name}:\n{plan}"
    finally:
        async with engine.begin() as conn:
            for table, key in (("rooms_rooms", "code"), ("room_seq", "room")):
                await conn.exec_driver_sql(
                    f"DELETE FROM {table} WHERE {key} LIKE %(like)s", {"like": f"{prefix}%"}
                )
        await rooms.aclose()


async def test_a_group_is_two_messages_to_postgresql(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each round trip is one message: BEGIN, the lock and the read in one simple-query
    string, then the write with COMMIT. (psycopg's pipeline sent each statement on its own,
    and PostgreSQL woke for each.)"""
    rooms, bus = rooms_service(engine)
    assert rooms.controls is not None
    owner = user("owner")
    code = await loaded(rooms, owner)
    await rooms.seek(env(owner, code, conn="c"), Seek(position_ms=1000))  # connects, prepares
    sent: list[tuple[bytes, Any]] = []
    execute = psycopg.AsyncCursor.execute

    async def recorded(self: psycopg.AsyncCursor[Any], query: Any, params: Any = None, **kw: Any):
        sent.append((query, params))
        return await execute(self, query, params, **kw)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", recorded)
    reply = await rooms.seek(env(owner, code, conn="c"), Seek(position_ms=9000))
    monkeypatch.undo()
    assert reply["playback"]["position_ms"] == 9000
    assert [params for _query, params in sent] == [None, None]  # no parameters: simple query
    first, second = (query for query, _params in sent)
    assert first.startswith(b"BEGIN; EXECUTE rooms_lock(") and b"EXECUTE rooms_read(" in first
    assert second.startswith(b"EXECUTE rooms_write(") and second.endswith(b"; COMMIT")
    assert [e["data"]["position_ms"] for e in playback_events(bus, code)] == [1000, 9000]
    await rooms.aclose()


async def test_quotes_in_what_a_group_writes_arrive_intact(engine: AsyncEngine) -> None:
    """The arguments are quoted SQL literals in the message: a name with quotes and
    backslashes is stored as it is, and cannot end the literal early."""
    rooms, _bus = rooms_service(engine)
    tricky = UserRef(id=uuid.uuid4().hex, name="O'Brien \\' ); DROP TABLE x; --\"")
    code = await loaded(rooms, tricky)
    await rooms.seek(env(tricky, code, conn="c"), Seek(position_ms=3000))
    assert await seeks_audited(engine, code, RoomAudit.name) == [tricky.name]
    await rooms.aclose()


async def test_a_user_id_with_array_syntax_in_it_is_read_as_it_is(engine: AsyncEngine) -> None:
    """The group's read takes the rooms and callers as text[] literals: a caller whose id
    holds the array syntax's own characters (quotes, backslash, comma, braces) is found as
    the room's member, and its control applied in the group."""
    rooms, _bus = rooms_service(engine)
    odd = UserRef(id="u\"{a,b}\\' " + uuid.uuid4().hex[:8], name="odd")
    code = await loaded(rooms, odd)
    alone_before = left_alone()
    reply = await rooms.seek(env(odd, code, conn="c"), Seek(position_ms=4000))
    assert reply["playback"]["position_ms"] == 4000
    assert left_alone() == alone_before, "applied in its group, not refused"
    assert await seeks_audited(engine, code, RoomAudit.user_id) == [odd.id]
    await rooms.aclose()


@pytest.mark.parametrize(
    "values", [["abcd"], ["a", "b"], ['q"uote', "back\\slash", "it's", "{br,ace}", " sp ", ""]]
)
async def test_text_array_reads_back_as_the_same_list(
    engine: AsyncEngine, values: list[str]
) -> None:
    from services.common import db

    async with await psycopg.AsyncConnection.connect(db.driver_dsn(engine)) as pg:
        quote = psycopg.pq.Escaping(pg.pgconn).escape_literal
        cur = await pg.execute(b"SELECT " + quote(controls.text_array(values)) + b"::text[]")
        assert (await cur.fetchone()) == (values,)
