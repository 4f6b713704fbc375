"""Players' reports of one room (`ready`, `ad.start`, `ad.end`) that wait for its lock go in
together (services/rooms/reports.py): one transaction for all of them, applied in arrival
order, each still authorised on its own, never ahead of another command of the room that
arrived before it, and a retried report among them answered as it was the first time."""

import asyncio
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.contracts.commands import AdReport, EntryRef, Join, Seek, SettingsUpdate
from services.common.contracts.envelope import CommandEnvelope
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import UserRef
from services.rooms import repository as rooms_repo
from services.rooms.playback import PlaybackState
from services.rooms.service import RoomsService
from tests.support.rooms_service import (
    Bus,
    env,
    loaded,
    user,
    waiting_in_lines,
)

pytestmark = pytest.mark.integration

ENTRY = EntryRef(entry_id="e1")  # what tests.support.rooms_service.loaded loads


class _Transactions:
    """Counts the transactions begun on an engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        event.listen(engine.sync_engine, "begin", self._begun)
        self._engine = engine

    def _begun(self, _conn: Any) -> None:
        self.count += 1

    def close(self) -> None:
        event.remove(self._engine.sync_engine, "begin", self._begun)


async def _starting_room(
    rooms: RoomsService, players: int
) -> tuple[str, UserRef, list[tuple[UserRef, str]]]:
    """A room whose owner pressed play with `players` players in it: `starting`, waiting
    for them."""
    owner = user("owner")
    code = await loaded(rooms, owner)
    joined = [(user(f"player {i}"), f"p{i}") for i in range(players)]
    for who, conn in joined:
        await rooms.join(env(who, code, conn=conn), Join(player=True))
    await rooms.play(env(owner, code), None)
    assert (await _playback(rooms, code)).status == "starting"
    return code, owner, joined


async def _playback(rooms: RoomsService, code: str) -> PlaybackState:
    async with rooms.engine.connect() as conn:
        return rooms_repo.playback_of(await rooms_repo.get_room(conn, code))


async def _ready_while_locked(
    rooms: RoomsService, code: str, envelopes: list[CommandEnvelope]
) -> list[Any]:
    """Send every report while the room's lock is held, then let them go: they wait together."""
    async with rooms._locks.hold(code):
        tasks = [asyncio.create_task(rooms.ready(e, ENTRY)) for e in envelopes]
        await waiting_in_lines(rooms, code, len(tasks))
    return await asyncio.gather(*tasks, return_exceptions=True)


def _playback_events(bus: Bus) -> int:
    return sum(1 for subject, _ in bus.published if subject.endswith(".evt.playback"))


async def test_reports_that_wait_together_share_one_transaction(
    rooms_bus: tuple[RoomsService, Bus], engine: AsyncEngine
) -> None:
    rooms, bus = rooms_bus
    code, _owner, players = await _starting_room(rooms, 6)
    events_before = _playback_events(bus)
    transactions = _Transactions(engine)
    try:
        replies = await _ready_while_locked(
            rooms, code, [env(who, code, conn=conn) for who, conn in players]
        )
    finally:
        transactions.close()

    assert replies == [{}] * len(players)
    assert transactions.count == 1  # one at a time: 6
    assert (await _playback(rooms, code)).status == "playing"
    assert _playback_events(bus) - events_before == 1  # `playing`, once the last was ready


async def test_a_report_from_a_socket_that_is_no_player_is_refused_alone(
    rooms_bus: tuple[RoomsService, Bus],
) -> None:
    rooms, _bus = rooms_bus
    code, _owner, players = await _starting_room(rooms, 2)
    remote = user("phone remote")
    await rooms.join(env(remote, code, conn="remote"), Join(player=False))
    stranger = user("not in the room")

    envelopes = [env(who, code, conn=conn) for who, conn in players]
    envelopes += [env(remote, code, conn="remote"), env(stranger, code, conn="s1")]
    *accepted, not_player, not_member = await _ready_while_locked(rooms, code, envelopes)

    assert accepted == [{}, {}]
    assert isinstance(not_player, ServiceError) and not_player.code is ErrorCode.NOT_MEMBER
    assert isinstance(not_member, ServiceError) and not_member.code is ErrorCode.NOT_MEMBER
    assert (await _playback(rooms, code)).status == "playing"


async def test_a_report_after_a_seek_counts_for_that_seek_only(
    rooms_bus: tuple[RoomsService, Bus],
) -> None:
    """A seek ends the line: the report that arrived after it is not applied with the one
    before it, ahead of the seek (whose new start would then forget it)."""
    rooms, _bus = rooms_bus
    code, owner, players = await _starting_room(rooms, 3)
    (early, early_conn), (late, late_conn) = players[0], players[1]

    async with rooms._locks.hold(code):
        before = asyncio.create_task(rooms.ready(env(early, code, conn=early_conn), ENTRY))
        await waiting_in_lines(rooms, code, 1)
        seek = asyncio.create_task(rooms.seek(env(owner, code), Seek(position_ms=90_000)))
        await asyncio.sleep(0.01)  # the seek waits for the lock too
        after = asyncio.create_task(rooms.ready(env(late, code, conn=late_conn), ENTRY))
        await waiting_in_lines(rooms, code, 2)
    await asyncio.gather(before, seek, after)

    state = await _playback(rooms, code)
    assert (state.status, state.position_ms) == ("starting", 90_000)
    assert state.ready == frozenset({late_conn})


async def test_a_retried_report_among_others_is_answered_as_the_first_time(
    rooms_bus: tuple[RoomsService, Bus],
) -> None:
    rooms, _bus = rooms_bus
    code, _owner, players = await _starting_room(rooms, 3)
    (first, first_conn), *others = players
    sent = env(first, code, conn=first_conn)
    assert await rooms.ready(sent, ENTRY) == {}

    # The same request again (a client that lost the reply), with the others' first reports:
    # together they fail on the remembered request id, and each goes again alone.
    replies = await _ready_while_locked(
        rooms, code, [sent] + [env(who, code, conn=conn) for who, conn in others]
    )

    assert replies == [{}, {}, {}]
    assert (await _playback(rooms, code)).status == "playing"


async def test_ad_reports_and_readies_go_in_one_line_in_arrival_order(
    rooms_bus: tuple[RoomsService, Bus], engine: AsyncEngine
) -> None:
    """A start with prerolls: some players report an ad, the others `ready`. Applied in
    arrival order in one transaction, the start waits for the ad (the default policy,
    `pause_all`, counts every player's), and plays when that ad ends and its player is ready."""
    rooms, _bus = rooms_bus
    code, _owner, players = await _starting_room(rooms, 3)
    (with_ad, ad_conn), *others = players
    ad = AdReport(entry_id=ENTRY.entry_id)
    transactions = _Transactions(engine)
    try:
        async with rooms._locks.hold(code):
            tasks = [asyncio.create_task(rooms.ad_start(env(with_ad, code, conn=ad_conn), ad))]
            tasks += [
                asyncio.create_task(rooms.ready(env(who, code, conn=conn), ENTRY))
                for who, conn in others
            ]
            await waiting_in_lines(rooms, code, len(tasks))
        replies = await asyncio.gather(*tasks)
    finally:
        transactions.close()

    assert replies == [{"counted": True}, {}, {}]
    assert transactions.count == 1
    state = await _playback(rooms, code)
    assert state.status == "starting"
    assert state.ads == frozenset({ad_conn})
    assert state.ready == frozenset(conn for _who, conn in others)

    late = await _ready_while_locked(
        rooms,
        code,
        [env(with_ad, code, conn=ad_conn), env(with_ad, code, conn=ad_conn)],
    )
    assert late == [{}, {}]  # ready during its ad: the start still waits for the ad
    assert (await _playback(rooms, code)).status == "starting"
    assert await rooms.ad_end(env(with_ad, code, conn=ad_conn), ad) == {"counted": True}
    assert (await _playback(rooms, code)).status == "playing"


async def _playing_room_without_advance(
    rooms: RoomsService, viewers: int
) -> tuple[str, list[tuple[UserRef, str]]]:
    """A room playing its entry (no players: it plays at once), auto-advance off, so its end
    holds the video paused there (no queue to ask)."""
    owner = user("owner")
    code = await loaded(rooms, owner)
    await rooms.update_settings(env(owner, code), SettingsUpdate(auto_advance=False))
    joined = [(user(f"viewer {i}"), f"v{i}") for i in range(viewers)]
    for who, conn in joined:
        await rooms.join(env(who, code, conn=conn), Join())
    await rooms.play(env(owner, code), None)
    assert (await _playback(rooms, code)).status == "playing"
    return code, joined


async def _ended_while_locked(
    rooms: RoomsService, code: str, reports: list[tuple[CommandEnvelope, EntryRef]]
) -> list[Any]:
    async with rooms._locks.hold(code):
        tasks = [asyncio.create_task(rooms.ended(e, entry)) for e, entry in reports]
        await waiting_in_lines(rooms, code, len(tasks))
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_end_reports_that_wait_together_end_the_entry_once(
    rooms_bus: tuple[RoomsService, Bus], engine: AsyncEngine
) -> None:
    """Every viewer's `ended` at the video's end: one read of the room for all of them, then
    one stop at the end (apart, each read the room twice and took the lock: 15 transactions
    for these five)."""
    rooms, bus = rooms_bus
    code, viewers = await _playing_room_without_advance(rooms, 5)
    events_before = _playback_events(bus)
    transactions = _Transactions(engine)
    try:
        replies = await _ended_while_locked(
            rooms, code, [(env(who, code, conn=conn), ENTRY) for who, conn in viewers]
        )
    finally:
        transactions.close()

    assert replies == [{}] * 5
    assert transactions.count <= 3  # the line's read, the entry's row, the stop
    state = await _playback(rooms, code)
    assert (state.status, state.entry_id) == ("paused", ENTRY.entry_id)
    assert _playback_events(bus) - events_before == 1


async def test_a_stranger_or_an_older_entry_ends_nothing(
    rooms_bus: tuple[RoomsService, Bus],
) -> None:
    rooms, _bus = rooms_bus
    code, viewers = await _playing_room_without_advance(rooms, 1)
    (viewer, conn), stranger = viewers[0], user("not in the room")

    stale, refused = await _ended_while_locked(
        rooms,
        code,
        [
            (env(viewer, code, conn=conn), EntryRef(entry_id="an earlier entry")),
            (env(stranger, code, conn="s1"), ENTRY),
        ],
    )

    assert stale == {}
    assert isinstance(refused, ServiceError) and refused.code is ErrorCode.NOT_MEMBER
    assert (await _playback(rooms, code)).status == "playing"
