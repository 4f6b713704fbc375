"""The rooms service's rules: every command, authorised here, applied under the room's lock."""

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from nats.aio.client import Client as NATS
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import bus, db, sequencer
from services.common.contracts import events, subjects
from services.common.contracts.commands import (
    AdReport,
    EntryRef,
    Join,
    RateChange,
    RoomCreate,
    Seek,
    SettingsUpdate,
)
from services.common.contracts.envelope import (
    AccessQuery,
    AccessReply,
    AdvanceReply,
    AdvanceRequest,
    CommandEnvelope,
    DirectoryQuery,
    DirectoryReply,
    DisconnectNotice,
    RoomVersions,
    RoomVersionsReply,
    SequenceCheck,
    SequenceCheckReply,
)
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import RoomSettings, UserRef
from services.common.idempotency import CommandLog
from services.common.jsonutil import now_ms
from services.common.keyedlocks import KeyedLocks
from services.common.roomevents import REPAIR_WAITS_S, keep_trying

from . import joins, outbox, reports
from . import playback as pb
from . import repository as repo
from .access import AccessReads
from .controls import Control, GroupCommitter, HandOff, Transition
from .lines import WaitingLines
from .models import RoomsCommand
from .permissions import Standing, decide, denied_message, role_of, standing_of
from .transaction import Published, RoomTx, membership_of

log = logging.getLogger(__name__)

FORGET_WAIT_S = 2.0  # at shutdown, for sent notices to leave the outbox

# Room codes: no 0/O, 1/l/I, so a code read aloud or typed from a phone is unambiguous.
CODE_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_LENGTH = 6  # 55^6 ≈ 2.8e10 codes: guessing a private room's code is not practical

TxBody = Callable[[RoomTx], Awaitable[Any]]

# Bounds one transaction's statements: a longer line of disconnects is taken by the next
# holders of the lock, in order.
GONE_PER_TRANSACTION = 500


@dataclass(slots=True, eq=False)  # each is itself: found in a line by identity
class _Gone:
    """A socket of the room that dropped, waiting for the room's lock."""

    conn: str
    done: asyncio.Future[dict[str, Any]]


class Waiting(Protocol):
    """A command waiting in a line for its room's lock (lines.py), answered through `done`."""

    @property
    def done(self) -> asyncio.Future[dict[str, Any]]: ...


W = TypeVar("W", bound=Waiting)


class _IdleRoom(HandOff):
    """`play` in a room with nothing loaded: the queue's next entry is loaded instead."""

    def __init__(self, entry_id: str | None) -> None:
        super().__init__(entry_id)
        self.entry_id = entry_id


class RoomsService:
    def __init__(self, engine: AsyncEngine, nc: NATS, timing: pb.Timing) -> None:
        self.engine = engine
        # (engine is None only in tests that never touch the database)
        self._single_statements: AsyncEngine = engine and db.single_statements(engine)
        self.nc = nc
        self.timing = timing
        self.commands = CommandLog(RoomsCommand.__table__)
        self._locks = KeyedLocks()
        # Joins, disconnects and players' reports that wait for their room's lock (lines.py).
        self._lines: WaitingLines[Any] = WaitingLines()
        self.lingering = joins.Lingering()  # joins into big rooms wait for the ones behind
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # After an event's publish failed: waits before each try to tell the members (`_repair`).
        self.repair_waits_s = REPAIR_WAITS_S
        self._repairs: set[asyncio.Future[None]] = set()
        self._forgets: set[asyncio.Future[None]] = set()  # outbox rows of notices sent
        # Playback controls in groups (controls.py): the arrays it writes are PostgreSQL's.
        self.controls: GroupCommitter | None = None
        # Access checks in batches (access.py), for the same reason.
        self._access_reads: AccessReads | None = None
        if engine is not None and engine.dialect.name == "postgresql":
            self.controls = GroupCommitter(engine, self._publish, self._schedule, self._alone)
            self._access_reads = AccessReads(db.driver_dsn(engine))

    # -- the one way a room changes ----------------------------------------------------

    async def in_room(
        self,
        env: CommandEnvelope | None,
        code: str,
        command: str,
        body: TxBody,
        *,
        locked: bool = False,
        caller: str | None = None,
    ) -> Any:
        """Run `body` under the room's lock (already held by the caller when `locked`);
        publish its events after commit; remember the reply under the request id so a retry
        is not applied twice. The membership of the envelope's user (or of `caller`, for a
        command that is not remembered) is read with the room."""
        hold = contextlib.nullcontext() if locked else self._hold(code)
        async with hold:
            try:
                async with self.engine.begin() as conn:
                    tx = await RoomTx.open(conn, code, env.user.id if env else caller)
                    reply = await body(tx)
                    if env is not None:
                        # Sent with the command's own writes (one statement on PostgreSQL);
                        # a retry of a request that committed fails here, as a duplicate.
                        tx.writes.add(
                            self.commands.remember_statement(env.user.id, env.id, command, reply)
                        )
                    published = await tx.commit()
            except (IntegrityError, ServiceError) as exc:
                if env is None:
                    raise
                # A retry of a request that was applied (by us or by a concurrent retry):
                # answer as it did.
                return await self.commands.recall_or_raise(
                    self.engine, env.user.id, env.id, command, exc
                )
            await self._publish(published)
        self._schedule(code, None if tx.closed else tx.playback.deadline_ms)
        return reply

    def _hold(self, code: str) -> contextlib.AbstractAsyncContextManager[None]:
        """The room's lock for a command that is not lined up: joins and reports that arrive
        after it wait for their turn after it (lines.WaitingLines)."""
        self._lines.barrier(code)
        return self._locks.hold(code)

    async def _in_line(
        self,
        code: str,
        kind: str,
        item: W,
        limit: int,
        together: Callable[[str, list[W]], Awaitable[None]],
        alone: Callable[[str, W], Awaitable[None]] | None = None,
        linger_s: float = 0.0,
    ) -> dict[str, Any]:
        """Wait in the room's line of `kind` for its lock; whoever takes the lock first applies
        the line (at most `limit` of it) with `together`. If that fails, each goes again with
        `alone` (by default `together` with it alone), so one command's failure is not every
        command's. `item.done` gets the reply either way: from this caller, or from an earlier
        holder of the lock that took it along. With `linger_s`, the command waits that long
        in its line first, so the ones right behind it join the line (joins.Lingering)."""
        self._lines.add(code, kind, item)
        try:
            if linger_s:
                await asyncio.sleep(linger_s)
            async with self._locks.hold(code):
                waiting = self._lines.take(code, item, limit)
                if waiting:
                    one_by_one = alone or (lambda code, one: together(code, [one]))
                    await _together(code, waiting, together, one_by_one)
        except BaseException:
            self._lines.drop(code, item)
            if item.done.done() and not item.done.cancelled():
                item.done.exception()  # told to the caller by this raise, not by the future
            raise
        return await item.done

    async def _publish(self, published: list[Published]) -> None:
        """Publish a committed change's events. One that fails (the bus away for longer
        than nats-py buffers, a payload it refuses) is lost but the change is not: the
        command is answered as committed, and the room's members are asked to resync once
        the bus takes messages again (`_repair`). A notice to the gateways (an eviction)
        stays in the outbox until it is sent (outbox.py): a resync takes no socket out of a
        room."""
        lost: tuple[str, int] | None = None  # the first room event lost: its room and v
        sent: list[str] = []  # notices published: out of the outbox once the bus has them
        for event in published:
            try:
                await bus.publish(self.nc, event.subject, event.payload)
            except Exception:
                log.exception("%s not published", event.subject)
                if event.notice_id is None and event.room is not None and event.v is not None:
                    lost = lost or (event.room, event.v)
            else:
                if event.notice_id is not None:
                    sent.append(event.notice_id)
        if lost is not None:
            room, v = lost
            self._in_background(self._repair(room, v - 1), self._repairs)
        if sent:
            self._in_background(self._forget(sent), self._forgets)

    @staticmethod
    def _in_background(work: Awaitable[None], tasks: set[asyncio.Future[None]]) -> None:
        task = asyncio.ensure_future(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _forget(self, notice_ids: list[str]) -> None:
        try:
            await outbox.forget(self.engine, self.nc, notice_ids)
        except Exception as exc:  # left in the outbox: a sweep sends them again (idempotent)
            log.warning("sent notices %s kept in the outbox: %r", notice_ids, exc)

    async def _repair(self, room: str, seen_v: int) -> None:
        """The room's events after `seen_v` were committed and not published: publish a
        `resync` after them (`check_sequence`), trying again while the bus is away."""
        check = SequenceCheck(room=room, seen_v=seen_v, resync=True)
        await keep_trying(
            lambda: self.check_sequence(check),
            self.repair_waits_s,
            f"room {room}: telling members events after v{seen_v} were lost",
        )

    # -- room lifecycle ----------------------------------------------------------------

    async def create(self, env: CommandEnvelope, data: RoomCreate) -> dict[str, Any]:
        recalled = await self.commands.recall(self.engine, env.user.id, env.id, "create")
        if recalled is not None:
            return recalled
        now = now_ms()
        settings = RoomSettings(
            name=data.name or f"{env.user.name}'s room"[:80],
            visibility=data.visibility,
            control_mode=data.control_mode,
        )
        async with self.engine.begin() as conn:
            code = await self._new_code(conn)
            await repo.insert_room(
                conn,
                code=code,
                owner_id=env.user.id,
                created_at_ms=now,
                **settings.model_dump(),
            )
            await sequencer.create(conn, code)
            await repo.insert_membership(
                conn,
                room=code,
                user_id=env.user.id,
                name=env.user.name,
                role="owner",
                joined_at_ms=now,
                banned=False,
            )
            row = await repo.get_room(conn, code)
            reply = {"room": repo.room_info(row).model_dump(), "settings": settings.model_dump()}
            await self.commands.remember(conn, env.user.id, env.id, "create", reply)
        return reply

    async def _new_code(self, conn: Any) -> str:
        for _ in range(10):
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            if not await repo.code_taken(conn, code):
                return code
        raise ServiceError(ErrorCode.INTERNAL)

    async def join(self, env: CommandEnvelope, data: Join) -> dict[str, Any]:
        """Join the room (again: a join is not remembered, and returns a fresh snapshot).
        Joins that wait for the room's lock go in with the one that takes it (joins.py)."""
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        joining = joins.Joining(env.user, _conn(env), data.player, done)
        code = room_of(env)
        return await self._in_line(
            code,
            "join",
            joining,
            joins.JOINS_PER_TRANSACTION,
            self._apply_joins,
            linger_s=self.lingering.wait_s(code),
        )

    async def _apply_joins(self, code: str, waiting: list[joins.Joining]) -> None:
        async def body(tx: RoomTx) -> tuple[dict[int, ServiceError], dict[str, Any] | None]:
            refused = await joins.apply(tx, waiting, self.authorize)
            if len(refused) == len(waiting):
                return refused, None
            # Read after the joins' writes: the snapshot's list, and the `members` event's
            # entries for the joiners.
            listed = await repo.member_list(tx.conn, tx.code)
            tx.members_listed(listed)
            self.lingering.saw(tx.code, len(listed))
            await tx.commit()
            return refused, await tx.snapshot_part(listed)

        caller = waiting[0].user.id
        refused, snapshot = await self.in_room(None, code, "join", body, locked=True, caller=caller)
        _answer(waiting, refused, [snapshot] * len(waiting))

    async def leave(self, env: CommandEnvelope, _data: Any) -> dict[str, Any]:
        await self._drop_session(room_of(env), conn_id=_conn(env))
        return {}

    async def disconnect(self, notice: DisconnectNotice) -> dict[str, Any]:
        """A socket dropped without `leave`: its member shows away (and holds up no start)
        until they come back or the janitor's presence timeout removes the session.
        Disconnects of one room that wait for its lock go in together: a draining gateway,
        or a watch party's end, drops hundreds of one room's sockets at once."""
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        gone = _Gone(notice.conn, done)
        return await self._in_line(
            notice.room, "away", gone, GONE_PER_TRANSACTION, self._gone_together
        )

    async def _gone_together(self, code: str, waiting: list[_Gone]) -> None:
        await self.mark_away(code, [g.conn for g in waiting], locked=True)
        _answer(waiting, {}, [{}] * len(waiting))

    async def mark_away(self, code: str, conns: list[str], *, locked: bool = False) -> int:
        """Mark these sockets' sessions away, in one transaction (the caller holds the room's
        lock when `locked`); how many were marked."""

        async def body(tx: RoomTx) -> int:
            marked = await repo.mark_away(tx.conn, code, conns, now_ms())
            if marked:
                tx.members_changed(*marked)
                await self.forget_conns(tx, conns)
            return len(marked)

        try:
            return int(await self.in_room(None, code, "away", body, locked=locked))
        except ServiceError as exc:
            if exc.code is ErrorCode.NOT_FOUND:
                return 0  # the room was closed meanwhile
            raise

    async def _drop_session(self, code: str, conn_id: str) -> None:
        async def body(tx: RoomTx) -> None:
            removed = await repo.remove_sessions(tx.conn, code, conn_id=conn_id)
            if removed:
                tx.members_changed(*removed)
                await self.forget_conns(tx, [conn_id])

        await self.in_room(None, code, "leave", body)

    async def forget_conns(self, tx: RoomTx, conns: list[str]) -> None:
        """Sockets left the room (their sessions are deleted): a player who left holds up no
        start and no midroll."""
        players = await tx.players()
        state = tx.playback
        for conn_id in conns:
            state = pb.drop_player(state, conn_id, players, now_ms(), self.timing)
        tx.set_playback(state)

    async def sync(self, env: CommandEnvelope, _data: Any) -> dict[str, Any]:
        code = room_of(env)
        async with self.engine.begin() as conn:
            tx = await RoomTx.open(conn, code)
            await self.authorize(tx, env.user, "room.sync")
            return await tx.snapshot_part()

    async def update_settings(self, env: CommandEnvelope, data: SettingsUpdate) -> dict[str, Any]:
        async def body(tx: RoomTx) -> dict[str, Any]:
            await self.authorize(tx, env.user, "room.settings")
            changes = data.model_dump(exclude_none=True)
            policy_before = tx.settings.ad_sync
            tx.set_settings(tx.settings.model_copy(update=changes))
            if tx.settings.ad_sync != policy_before:
                tx.set_playback(
                    pb.forget_ads(tx.playback, await tx.players(), now_ms(), self.timing)
                )
            await tx.audit(env.user, "room.settings", detail=changes)
            return {"settings": tx.settings.model_dump()}

        return await self.in_room(env, room_of(env), "settings", body)

    async def access(self, query: AccessQuery) -> AccessReply:
        """Another service asks about a user in a room, and whether `query.command` is
        allowed for them: the matrix in permissions.py decides for the queue too."""
        # Every chat message and queue command asks: one statement, no transaction around it
        # (on PostgreSQL, one statement for every question that arrived meanwhile).
        if self._access_reads is not None:
            row = await self._access_reads.read(query.room, query.user_id)
        else:
            async with self._single_statements.connect() as conn:
                row = await repo.room_with_member(conn, query.room, query.user_id)
        if row is None:
            raise ServiceError(ErrorCode.NOT_FOUND, "No such room.")
        standing = standing_of(row.owner_id, query.user_id, membership_of(row))
        settings = repo.settings_of(row)
        denied = None
        if query.command is not None:
            try:
                denied = decide(query.command, standing, settings.control_mode, query.admin)
            except KeyError:
                raise ServiceError(ErrorCode.BAD_REQUEST, "command: unknown") from None
        return AccessReply(
            member=role_of(standing) is not None,
            role=role_of(standing),
            banned=standing == "banned",
            settings=settings,
            denied=denied,
        )

    async def authorize(self, tx: RoomTx, user: UserRef, command: str) -> Standing:
        """The caller's standing, or the error the permission matrix gives for `command`."""
        standing = await tx.standing_of(user.id)
        denied = decide(command, standing, tx.settings.control_mode, user.admin)
        if denied is not None:
            message = denied_message(command) if denied is ErrorCode.FORBIDDEN else None
            raise ServiceError(denied, message)
        return standing

    # -- playback ----------------------------------------------------------------------

    async def _control(
        self,
        env: CommandEnvelope,
        command: str,
        transition: Transition,
        detail: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A playback control: in the next group commit on PostgreSQL (controls.py), else
        alone. The room's local lock is held until it is answered either way."""
        code = room_of(env)
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        control = Control(env, code, command, transition, detail, done)
        async with self._hold(code):
            if self.controls is None:
                return await self._alone(control)
            return await self.controls.submit(control)

    async def _alone(self, control: Control) -> dict[str, Any]:
        """One control in its own transaction (the caller holds the room's lock)."""
        env, command = control.env, control.command

        async def body(tx: RoomTx) -> dict[str, Any]:
            await self.authorize(tx, env.user, command)
            tx.set_playback(control.transition(tx.playback, await tx.players(), now_ms()))
            await tx.audit(env.user, command, detail=control.detail)
            return {"playback": tx.playback.contract_data()}

        return await self.in_room(env, control.room, command, body, locked=True)

    async def play(self, env: CommandEnvelope, _data: Any) -> dict[str, Any]:
        def start(state: pb.PlaybackState, players: frozenset[str], now: int) -> pb.PlaybackState:
            if state.status == "idle":
                raise _IdleRoom(state.entry_id)  # after the permission check, before writes
            return pb.play(state, players, now, self.timing)

        try:
            return await self._control(env, "play", start)
        except _IdleRoom as idle:
            return await self._advance(env, "play", idle.entry_id)

    async def pause(self, env: CommandEnvelope, _data: Any) -> dict[str, Any]:
        return await self._control(env, "pause", lambda state, _players, now: pb.pause(state, now))

    async def seek(self, env: CommandEnvelope, data: Seek) -> dict[str, Any]:
        def seek(state: pb.PlaybackState, players: frozenset[str], now: int) -> pb.PlaybackState:
            return pb.seek(state, data.position_ms, players, now, self.timing)

        return await self._control(env, "seek", seek, {"position_ms": data.position_ms})

    async def restart(self, env: CommandEnvelope, _data: Any) -> dict[str, Any]:
        def restart(state: pb.PlaybackState, players: frozenset[str], now: int) -> pb.PlaybackState:
            return pb.seek(state, 0, players, now, self.timing)

        return await self._control(env, "restart", restart)

    async def skip(self, env: CommandEnvelope, _data: Any) -> dict[str, Any]:
        state = await self._peek(env, "skip")
        return await self._advance(env, "skip", state.entry_id)

    async def rate(self, env: CommandEnvelope, data: RateChange) -> dict[str, Any]:
        return await self._control(
            env,
            "rate",
            lambda state, _players, now: pb.set_rate(state, data.rate, now),
            {"rate": data.rate},
        )

    # -- players' reports: ready, ended, ads -----------------------------------------------

    async def ready(self, env: CommandEnvelope, data: EntryRef) -> dict[str, Any]:
        """A player loaded the entry at the start's position."""
        return await self._report(env, "ready", data.entry_id)

    async def ended(self, env: CommandEnvelope, data: EntryRef) -> dict[str, Any]:
        """A player saw the video end (the room may not know its duration). Every player of
        the room says so at about the same instant: reports that wait for the room's lock go
        in together, with one read of the room and one move to the next entry."""
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        report = reports.Report(env, "ended", _conn(env), data.entry_id, done)
        return await self._in_line(
            room_of(env),
            "ended",
            report,
            reports.REPORTS_PER_TRANSACTION,
            self._apply_ended,
        )

    async def _apply_ended(self, code: str, waiting: list[reports.Report]) -> None:
        """Authorise each report, then end the entry once if any names the one playing (the
        caller holds the room's lock); each is answered after that."""

        async def body(tx: RoomTx) -> tuple[dict[int, ServiceError], str | None]:
            refused, _standings = await reports.authorize_each(tx, waiting, self.authorize)
            state = tx.playback
            named = {r.entry_id for i, r in enumerate(waiting) if i not in refused}
            ending = state.entry_id if state.status == "playing" else None
            return refused, ending if ending in named else None

        caller = waiting[0].env.user.id
        refused, ending = await self.in_room(None, code, "ended", body, locked=True, caller=caller)
        if ending is not None:
            await self._finish_entry(code, ending, locked=True)
        _answer(waiting, refused, [{}] * len(waiting))

    async def ad_start(self, env: CommandEnvelope, data: AdReport) -> dict[str, Any]:
        return await self._report(env, "ad.start", data.entry_id)

    async def ad_end(self, env: CommandEnvelope, data: AdReport) -> dict[str, Any]:
        return await self._report(env, "ad.end", data.entry_id)

    async def _report(
        self, env: CommandEnvelope, command: str, entry_id: str | None
    ) -> dict[str, Any]:
        """Reports that wait for the room's lock go in with the one that takes it
        (reports.py)."""
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        report = reports.Report(env, command, _conn(env), entry_id, done)
        return await self._in_line(
            room_of(env),
            "report",
            report,
            reports.REPORTS_PER_TRANSACTION,
            self._apply_reports,
            self._report_alone,
        )

    async def _apply_reports(self, code: str, waiting: list[reports.Report]) -> None:
        if len(waiting) == 1:
            await self._report_alone(code, waiting[0])
            return

        async def body(tx: RoomTx) -> tuple[dict[int, ServiceError], list[Any]]:
            refused, replies = await reports.apply(tx, waiting, self.authorize, self.timing)
            applied = [
                (r.env.user.id, r.env.id, r.command, reply)
                for r, reply in zip(waiting, replies, strict=True)
                if reply is not None
            ]
            if applied:
                # A retried report among them that committed before fails them all here;
                # alone, each is then answered as it was (`in_room`).
                await self.commands.remember_many(tx.conn, applied)
            return refused, replies

        caller = waiting[0].env.user.id
        refused, replies = await self.in_room(
            None, code, "report", body, locked=True, caller=caller
        )
        _answer(waiting, refused, replies)

    async def _report_alone(self, code: str, report: reports.Report) -> None:
        """One report in its own transaction (the caller holds the room's lock), remembered
        under its request id."""
        env = report.env

        async def body(tx: RoomTx) -> dict[str, Any]:
            standing = await self.authorize(tx, env.user, report.command)
            players = await tx.players()
            reports.require_player(report.conn_id, players)
            state, reply = reports.step(
                tx.playback, report, standing, players, tx.settings.ad_sync, now_ms(), self.timing
            )
            tx.set_playback(state)
            return reply

        reply = await self.in_room(env, code, report.command, body, locked=True)
        if not report.done.done():
            report.done.set_result(reply)

    # -- vote skip ---------------------------------------------------------------------

    async def skip_vote(self, env: CommandEnvelope, _data: Any) -> dict[str, Any]:
        code = room_of(env)

        async def body(tx: RoomTx) -> dict[str, Any]:
            await self.authorize(tx, env.user, "skip.vote")
            tx.set_playback(pb.vote_skip(tx.playback, env.user.id))
            await tx.audit(env.user, "skip.vote")
            online = await repo.online_users(tx.conn, code)
            needed = pb.votes_needed(tx.settings.vote_skip_ratio, online)
            votes = len(tx.playback.votes)
            return {
                "entry_id": tx.playback.entry_id,
                "votes": votes,
                "needed": needed,
                "skipped": votes >= needed,
            }

        reply = await self.in_room(env, code, "skip.vote", body)
        if reply["skipped"]:
            # Idempotent per entry: a retried vote, or two votes crossing the line at once,
            # advance once.
            await self._advance(None, "vote_skip", reply["entry_id"], room=code)
        return reply

    async def _peek(self, env: CommandEnvelope, command: str) -> pb.PlaybackState:
        """Authorise and read the playback before a step that must ask the queue first."""
        async with self.engine.connect() as conn:
            row = await repo.get_room(conn, room_of(env))
            if row is None:
                raise ServiceError(ErrorCode.NOT_FOUND, "No such room.")
            await self.authorize(RoomTx(conn, row, 0), env.user, command)
            return repo.playback_of(row)

    async def _advance(
        self,
        env: CommandEnvelope | None,
        command: str,
        from_entry: str | None,
        room: str = "",
        *,
        locked: bool = False,
    ) -> dict[str, Any]:
        """Move to the queue's next entry. The queue is asked first, outside the room's
        transaction (it locks the room's row for its own change), and with the room's local
        lock only when the caller holds it already (`locked`); it answers idempotently per
        `from_entry`, so concurrent skips advance once."""
        code = room or room_of(env)  # type: ignore[arg-type]
        reply = await bus.request(
            self.nc,
            subjects.command("queue", "advance"),
            AdvanceRequest(room=code, after_entry_id=from_entry),
            timeout_s=3.0,
        )
        entry = AdvanceReply.model_validate(reply).entry

        async def body(tx: RoomTx) -> dict[str, Any]:
            if env is not None:
                await self.authorize(tx, env.user, command)
                await tx.audit(env.user, command)
            if tx.playback.entry_id == from_entry:
                if command == "vote_skip":  # once, however many votes crossed the line
                    await tx.audit(None, "skip", detail={"by": "vote", "entry_id": from_entry})
                now = now_ms()
                if entry is not None:
                    tx.set_playback(
                        pb.load(tx.playback, entry, await tx.players(), now, self.timing)
                    )
                elif command == "play":
                    raise ServiceError(ErrorCode.QUEUE_EMPTY)
                else:
                    tx.set_playback(pb.finish(tx.playback, now))
            return {"playback": tx.playback.contract_data()}

        return await self.in_room(env, code, command, body, locked=locked)

    async def _finish_entry(self, code: str, entry_id: str | None, *, locked: bool = False) -> None:
        """The entry ended: the next one, or a stop at its end (`locked`: the caller holds
        the room's lock)."""
        async with self.engine.connect() as conn:
            row = await repo.get_room(conn, code)
        if row is None or row.entry_id != entry_id:
            return
        if row.auto_advance:
            await self._advance(None, "auto_advance", entry_id, room=code, locked=locked)
            return

        async def body(tx: RoomTx) -> None:
            if tx.playback.entry_id == entry_id and tx.playback.status == "playing":
                tx.set_playback(pb.stop_at_end(tx.playback, now_ms()))

        await self.in_room(None, code, "ended", body, locked=locked)

    # -- deadlines: start timeouts and video ends --------------------------------------

    async def due(self, code: str) -> None:
        """Act on a room whose deadline passed; safe to run on every replica at once."""
        async with self.engine.connect() as conn:
            row = await repo.get_room(conn, code)
        now = now_ms()
        if row is None or row.deadline_ms is None or row.deadline_ms > now:
            return
        if row.status == "playing":
            await self._finish_entry(code, row.entry_id)
            return

        async def body(tx: RoomTx) -> None:
            state = tx.playback
            if state.deadline_ms and state.deadline_ms <= now_ms():
                tx.set_playback(pb.expire(state, await tx.players(), now_ms(), self.timing))

        await self.in_room(None, code, "due", body)

    def _schedule(self, code: str, deadline_ms: int | None) -> None:
        """A local timer for the deadline, so it fires on time on this replica; the sweep
        catches deadlines whose replica died."""
        old = self._timers.pop(code, None)
        if old is not None:
            old.cancel()
        if deadline_ms is None:
            return
        loop = asyncio.get_running_loop()
        delay_s = max(0.0, (deadline_ms - now_ms()) / 1000)
        self._timers[code] = loop.call_later(delay_s, self._fire, code)

    def _fire(self, code: str) -> None:
        self._timers.pop(code, None)
        self.spawn(self.due(code))

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("room deadline failed", exc_info=task.exception())

    async def sweep(self, stop: asyncio.Event, interval_s: float) -> None:
        """Every `interval_s`: the rooms whose deadline passed without a timer here (their
        replica died, or this one restarted), and the notices whose replica did not send
        them (outbox.py)."""
        while not stop.is_set():
            await self._guarded("sweep", self._sweep_once)
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                pass

    async def _sweep_once(self) -> None:
        """Two reads on an autocommitting connection, and a transaction only for what they
        found: an idle replica's sweep had opened two transactions a second, each with its
        BEGIN and its end, the outbox's with a locking read. Each due room is acted on
        alone, so one that fails does not hold back the others."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            due = await repo.due_rooms(conn, now_ms())
            stale = await outbox.any_stale(conn)
        for code in due:
            if code not in self._timers:
                await self._guarded("deadline sweep", lambda code=code: self.due(code))
        if stale:
            await self._guarded("outbox sweep", lambda: outbox.send_stale(self.engine, self.nc))

    @staticmethod
    async def _guarded(what: str, work: Callable[[], Awaitable[Any]]) -> None:
        try:
            await work()
        except Exception as exc:
            if bus.is_outage(exc):  # the database or the bus is restarting: next sweep
                log.warning("%s skipped: %r", what, exc)
            else:
                log.exception("%s failed", what)

    # -- the sequence after a failure ------------------------------------------------

    async def check_sequence(self, check: SequenceCheck) -> SequenceCheckReply:
        """A command's publisher may have died between its commit and its publish, and if
        no later event of the room comes, nobody sees the gap. The room's version, read
        under its lock (so after the commands ahead and their publishes); with `resync`,
        and the version past what the asker delivered, a `resync` event goes after it, so
        every gateway and member reads a snapshot."""
        async with self._hold(check.room):
            async with self.engine.begin() as conn:
                v = await sequencer.lock(conn, check.room)
                if not check.resync or v <= check.seen_v:
                    return SequenceCheckReply(v=v, resynced=False)
                v = await sequencer.bump(conn, check.room)
            await bus.publish(
                self.nc, events.subject_for("resync", check.room), events.events_lost(check.room, v)
            )
        log.warning(
            "room %s: events after v%d of v%d were lost; asked every member to resync",
            check.room,
            check.seen_v,
            v - 1,
        )
        return SequenceCheckReply(v=v, resynced=True)

    async def versions(self, query: RoomVersions) -> RoomVersionsReply:
        """Each room's committed version, for a gateway's sweep (no locks: a room it finds
        behind gets a `check_sequence`, which reads under the lock)."""
        async with self.engine.connect() as conn:
            return RoomVersionsReply(versions=await sequencer.versions(conn, query.rooms))

    # -- directory and figures ---------------------------------------------------------

    async def directory(self, query: DirectoryQuery) -> DirectoryReply:
        async with self.engine.connect() as conn:
            # One more than asked: whether another page follows.
            rooms = await repo.public_rooms(conn, query.limit + 1, query.offset)
        more = len(rooms) > query.limit
        return DirectoryReply(
            rooms=rooms[: query.limit], next_offset=query.offset + query.limit if more else None
        )

    async def figures(self) -> dict[str, float]:
        async with self.engine.connect() as conn:
            return await repo.figures(conn)

    async def aclose(self) -> None:
        """Stop: deadline timers, and the connections of the group committer and the access
        reads. Sent notices are first let out of the outbox (else another replica sends
        them again, which does nothing more)."""
        if self._forgets:
            await asyncio.wait(self._forgets, timeout=FORGET_WAIT_S)
        self.close()
        await asyncio.gather(*self._repairs, *self._forgets, return_exceptions=True)
        if self.controls is not None:
            await self.controls.aclose()
        if self._access_reads is not None:
            await self._access_reads.aclose()

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in (*self._repairs, *self._forgets):
            task.cancel()


def room_of(env: CommandEnvelope) -> str:
    if not env.room:
        raise ServiceError(ErrorCode.BAD_REQUEST, "room: required")
    return env.room


# What a join or a report still waiting in a line is told when the service stops under it.
_STOPPING = ServiceError(ErrorCode.UNAVAILABLE, "The rooms service is stopping; try again.")


async def _together(
    code: str,
    waiting: list[W],
    together: Callable[[str, list[W]], Awaitable[None]],
    alone: Callable[[str, W], Awaitable[None]],
) -> None:
    """Apply a line with `together` (the caller holds the room's lock); if it fails, each goes
    again with `alone`. Every command of the line is answered through its future."""
    try:
        try:
            await together(code, waiting)
        except Exception as exc:
            if isinstance(exc, ServiceError) or len(waiting) == 1:
                _fail(waiting, exc)  # the room is gone, say: the same for every one
                return
            log.warning("%d commands of %s failed together; each goes alone", len(waiting), code)
            for item in waiting:
                try:
                    await alone(code, item)
                except Exception as one:
                    _fail([item], one)
    except BaseException:
        _fail(waiting, _STOPPING)
        raise


def _answer(waiting: list[Any], refused: dict[int, ServiceError], replies: list[Any]) -> None:
    """A line applied together: each command gets its reply, or its refusal."""
    for i, item in enumerate(waiting):
        if item.done.done():
            continue
        if i in refused:
            item.done.set_exception(refused[i])
        else:
            item.done.set_result(replies[i])


def _fail(waiting: list[Any], exc: BaseException) -> None:
    for item in waiting:
        if not item.done.done():
            item.done.set_exception(exc)


def _conn(env: CommandEnvelope) -> str:
    if not env.conn:
        raise ServiceError(ErrorCode.BAD_REQUEST, "conn: required")
    return env.conn
