"""Playback controls (play, pause, seek, restart, rate) committed in groups.

Each control is one read, one pure transition (playback.py) and one write. Run one at a time,
a replica spent most of a control in SQLAlchemy and in its own transaction's four round
trips: about 200 controls/s with PostgreSQL on the same core. Here every control that
arrives while a group is in the database joins the next group, and a group costs one
transaction whatever its size:

1. one statement locks every room of the group (their sequence rows, in room order, so two
   replicas' groups cannot deadlock), and the next reads each room, its live players and the
   caller's membership as the lock's previous holder left them (both in one round trip);
2. the controls are authorised and applied in Python, in arrival order;
3. one statement of data-modifying CTEs over JSON rows writes every changed room, every room's
   new version, the audit entries and the idempotency records, and the commit goes with it
   (one round trip).

Each round trip is one message: the statements are prepared once per connection (SQL
PREPARE, generic plans) and sent as one simple-query string of EXECUTEs with their arguments
quoted by libpq, so PostgreSQL wakes once, runs them in order and answers once. psycopg's
pipeline mode sent the same statements as one message each (BEGIN, the lock, the read, the
sync), and a lone control's transaction took four wake-ups of PostgreSQL and of this process
instead of two: seek to first member, 10 members, p50 3.30 / 3.48 → 3.02 / 3.18 ms.

Then each control's event is published (with its own trace context) and it is answered.

Anything unusual is left to the ordinary path (`RoomsService.in_room`), which answers it as
it always did: a control the permission matrix refuses, a room that is gone (the ordinary path
then gives the error, or the reply remembered for a retried request id), and every control of
a group that fails as a whole (a request id already remembered, a lost connection).

Order: a control holds its room's local lock (`KeyedLocks`) from submission until it is
answered, so one room's commands still run one at a time in arrival order on this replica, and
a group never holds two controls of one room (the scheduler, services/common/grouping.py, also
holds back a second one whose caller gave up and released the lock).
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import orjson
import psycopg
from opentelemetry import context as otel_context
from prometheus_client import Counter, Histogram
from psycopg import pq
from psycopg.rows import namedtuple_row
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import bus, db, tracing
from services.common.contracts import events
from services.common.contracts.envelope import CommandEnvelope
from services.common.grouping import OneGroupAtATime
from services.common.jsonutil import now_ms

from . import repository as repo
from .permissions import decide, standing_of
from .playback import PlaybackState
from .transaction import Published, membership_of

log = logging.getLogger(__name__)

MAX_GROUP = 128  # controls per transaction: bounds a group's statement and its lock set
# One group in the database at a time (services/common/grouping.py), as for chat and the
# queue: with two, each group took what was waiting sooner, groups got smaller and
# throughput fell (durable PostgreSQL, 16 in flight: 1,337 controls/s with two, 1,832 with
# one).

GROUP_SIZE = Histogram(
    "sharetube_rooms_control_group_size",
    "Playback controls committed together in one transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
LEFT_ALONE = Counter(
    "sharetube_rooms_controls_alone_total",
    "Playback controls a group left to the ordinary path, by why",
    ["reason"],  # refused (or its transition raised), no_room, group_failed
)

# A control's change: (playback, live player sockets, now ms) -> playback. It may raise
# ServiceError (or another exception the caller handles, e.g. an idle room's `play`).
Transition = Callable[[PlaybackState, frozenset[str], int], PlaybackState]


@dataclass(slots=True)
class Control:
    env: CommandEnvelope
    room: str
    command: str
    transition: Transition
    detail: dict[str, Any] | None
    done: asyncio.Future[dict[str, Any]]
    trace_context: otel_context.Context = field(default_factory=otel_context.get_current)


@dataclass(slots=True)
class _Applied:
    """One control's outcome inside a group, before commit."""

    control: Control
    reply: dict[str, Any]
    event: Published | None
    deadline_ms: int | None


# Lock the group's rooms (their sequence rows) in room order, so two replicas' groups cannot
# deadlock.
_LOCK = """
SELECT room FROM room_seq WHERE room = ANY($1) ORDER BY room FOR UPDATE
"""

# Then read what a control needs, in a statement of its own: it takes its snapshot after the
# locks are held, so it sees what the previous holder committed. (Locked and read in one
# statement, PostgreSQL re-reads only the locked row after waiting; the room row and the
# players would come from the statement's older snapshot, and be written back stale.)
_READ = """
SELECT s.v AS seq_v, r.*,
       (SELECT string_agg(x.conn, ' ') FROM rooms_sessions x
         WHERE x.room = s.room AND x.player AND x.away_since_ms IS NULL) AS players,
       m.name AS m_name, m.role AS m_role, m.joined_at_ms AS m_joined_at_ms,
       m.banned AS m_banned
FROM unnest($1::text[], $2::text[]) AS c(room, user_id)
JOIN room_seq s ON s.room = c.room
JOIN rooms_rooms r ON r.code = c.room
LEFT JOIN rooms_members m ON m.room = c.room AND m.user_id = c.user_id
"""

# Every write of a group in one statement (one row per room at most: see "Order" above). The
# rows come as one JSON text per table: psycopg dumped the 27 arrays this took before in
# Python, 74 µs a group (more than the Python of the whole group's apply), where orjson
# writes the JSON in under 1 µs and PostgreSQL reads it in C. Millisecond columns are read as
# numeric and cast on assignment, as the bigint arrays were.
_WRITE = """
WITH seq AS (
  UPDATE room_seq q SET v = u.v
  FROM json_to_recordset($1::json) AS u(room text, v bigint)
  WHERE q.room = u.room
), playback AS (
  UPDATE rooms_rooms r SET
    status = u.status, entry_id = u.entry_id, video_id = u.video_id, title = u.title,
    duration_ms = u.duration_ms, position_ms = u.position_ms, anchor_ms = u.anchor_ms,
    rate = u.rate, ready_conns = u.ready_conns, deadline_ms = u.deadline_ms,
    ad_conns = u.ad_conns, skip_votes = u.skip_votes, playback_v = u.playback_v
  FROM json_to_recordset($2::json) AS u(
    code text, status text, entry_id text, video_id text, title text, duration_ms numeric,
    position_ms numeric, anchor_ms numeric, rate float8, ready_conns text,
    deadline_ms numeric, ad_conns text, skip_votes text, playback_v bigint)
  WHERE r.code = u.code
), audit AS (
  INSERT INTO rooms_audit (room, at_ms, user_id, name, action, target_id, detail)
  SELECT a.room, a.at_ms, a.user_id, a.name, a.action, NULL, a.detail
  FROM json_to_recordset($3::json)
       AS a(room text, at_ms bigint, user_id text, name text, action text, detail text)
)
INSERT INTO rooms_commands (user_id, request_id, command, reply, at_ms)
SELECT c.user_id, c.request_id, c.command, convert_to(c.reply, 'UTF8'), c.at_ms
FROM json_to_recordset($4::json)
     AS c(user_id text, request_id text, command text, reply text, at_ms bigint)
"""


# Prepared on each committer connection; EXECUTE runs them with their generic plans.
_PREPARED = (
    ("rooms_lock", "text[]", _LOCK),
    ("rooms_read", "text[], text[]", _READ),
    ("rooms_write", "json, json, json, json", _WRITE),
)


class _Writes:
    """The rows of one group's write statement, by table."""

    def __init__(self) -> None:
        self.seq_rows: list[dict[str, Any]] = []
        self.playback_rows: list[dict[str, Any]] = []
        self.audit_rows: list[dict[str, Any]] = []
        self.command_rows: list[dict[str, Any]] = []

    def arguments(self, quote: Callable[[bytes], bytes]) -> bytes:
        """rooms_write's four arguments, each a JSON text quoted as an SQL literal."""
        tables = (self.seq_rows, self.playback_rows, self.audit_rows, self.command_rows)
        return b", ".join(quote(orjson.dumps(rows)) for rows in tables)

    def version(self, room: str, v: int) -> None:
        self.seq_rows.append({"room": room, "v": v})

    def playback(self, room: str, state: PlaybackState, playback_v: int) -> None:
        self.playback_rows.append({"code": room, **repo.playback_values(state, playback_v)})

    def audit(self, control: Control, at_ms: int) -> None:
        user = control.env.user
        self.audit_rows.append(
            {
                "room": control.room,
                "at_ms": at_ms,
                "user_id": user.id,
                "name": user.name[:40],
                "action": control.command,
                "detail": orjson.dumps(control.detail or {}).decode(),
            }
        )

    def remember(self, control: Control, reply: dict[str, Any], at_ms: int) -> None:
        self.command_rows.append(
            {
                "user_id": control.env.user.id,
                "request_id": control.env.id,
                "command": control.command,
                "reply": orjson.dumps(reply).decode(),
                "at_ms": at_ms,
            }
        )


class HandOff(Exception):
    """Raised by a transition for a control that is another path's to serve (`play` in a
    room with nothing loaded goes to the queue for its next entry). The group answers the
    control with it at once, and its caller goes that way: no transaction of its own to
    find the same again."""


Alone = Callable[[Control], Awaitable[dict[str, Any]]]


class GroupCommitter:
    """Collects controls and commits them in groups, one group at a time."""

    def __init__(
        self,
        engine: AsyncEngine,
        publish: Callable[[list[Published]], Awaitable[None]],
        schedule: Callable[[str, int | None], None],
        alone: Alone,
    ) -> None:
        self._publish = publish
        self._schedule = schedule
        self._alone = alone  # the ordinary path, for what a group leaves out
        self._groups = OneGroupAtATime(self._run, attrgetter("room"), MAX_GROUP)
        self._alone_tasks: set[asyncio.Task[None]] = set()  # left to the ordinary path
        self._dsn = db.driver_dsn(engine)
        self._idle: list[psycopg.AsyncConnection[Any]] = []  # the group's, between groups

    async def submit(self, control: Control) -> dict[str, Any]:
        """Apply `control` in the next group; its reply (or its error)."""
        self._groups.add(control)
        return await control.done

    async def aclose(self) -> None:
        """Stop: the group under way and what went to the ordinary path are cancelled
        (their callers get an error), and the committer's connections are closed."""
        await self._groups.aclose()
        alone = list(self._alone_tasks)
        for task in alone:
            task.cancel()
        await asyncio.gather(*alone, return_exceptions=True)
        idle, self._idle = self._idle, []
        for pg in idle:
            with contextlib.suppress(Exception):
                await pg.close()

    async def _run(self, group: list[Control]) -> None:
        GROUP_SIZE.observe(len(group))
        leftover: list[Control] = []
        try:
            leftover = await self._commit(group)
        except Exception:
            log.exception("control group failed")
        finally:
            left = {id(control) for control in leftover}
            for control in group:  # never leave a caller waiting
                if not control.done.done() and id(control) not in left:
                    control.done.set_exception(RuntimeError("control not applied"))
        # Each in a task of its own, and this group's task ends: the ordinary path's
        # transactions must not hold up the next group. (Run inside the group, they did: in
        # the 500-room setup of `make load SERVICE=gateway`, 32 rooms at once, a `play` in an
        # idle room spent 0.2-0.6 s there, behind the other plays' transactions.)
        for control in leftover:
            task = asyncio.get_running_loop().create_task(self._run_alone(control))
            self._alone_tasks.add(task)
            task.add_done_callback(self._alone_tasks.discard)

    async def _commit(self, group: list[Control]) -> list[Control]:
        """Commit the group, publish and answer what it applied; what it leaves to the
        ordinary path."""
        with tracing.group_span("rooms group commit", [c.trace_context for c in group]):
            try:
                applied, leftover, after = await self._transaction(group)
            except Exception as exc:
                if not bus.is_outage(exc):
                    log.warning("control group of %d rolled back: %r", len(group), exc)
                LEFT_ALONE.labels("group_failed").inc(len(group))
                applied, leftover, after = [], list(group), {}
        for room, deadline in after.items():
            self._schedule(room, deadline)
        for outcome in applied:
            if outcome.event is not None:
                token = otel_context.attach(outcome.control.trace_context)
                try:
                    await self._publish([outcome.event])
                except Exception:  # the service's publish repairs what it could not send
                    log.exception("playback event of %s not published", outcome.control.room)
                finally:
                    otel_context.detach(token)
            outcome.control.done.set_result(outcome.reply)
        return leftover

    async def _run_alone(self, control: Control) -> None:
        token = otel_context.attach(control.trace_context)
        try:
            control.done.set_result(await self._alone(control))
        except BaseException as exc:
            if not control.done.done():
                control.done.set_exception(exc)
        finally:
            otel_context.detach(token)

    async def _transaction(
        self, group: list[Control]
    ) -> tuple[list[_Applied], list[Control], dict[str, int | None]]:
        """Lock, read, apply and write the group: what was applied, what the ordinary path
        must take, and each written room's next deadline. Two round trips, one message each
        (see the module's docstring): BEGIN with the lock and the read, then the write with
        COMMIT. Without parameters psycopg sends a query as it is, by the simple-query
        protocol, where one string may hold several statements."""
        applied: list[_Applied] = []
        leftover: list[Control] = []
        handed_off: list[tuple[Control, HandOff]] = []
        pg = self._idle.pop() if self._idle else await self._connect()
        quote = pq.Escaping(pg.pgconn).escape_literal
        try:
            async with pg.cursor(row_factory=namedtuple_row) as cur:
                rooms = quote(text_array([c.room for c in group]))
                users = quote(text_array([c.env.user.id for c in group]))
                await cur.execute(
                    b"BEGIN; EXECUTE rooms_lock(%b); EXECUTE rooms_read(%b, %b)"
                    % (rooms, rooms, users)
                )
                cur.nextset()  # past BEGIN's and the lock's results, to the read's rows
                cur.nextset()
                rows = {row.code: row for row in await cur.fetchall()}
                writes = _Writes()
                now = now_ms()
                for control in group:
                    row = rows.get(control.room)
                    try:
                        outcome = None if row is None else _apply(control, row, now, writes)
                    except HandOff as handoff:
                        handed_off.append((control, handoff))
                        continue
                    if outcome is None:
                        LEFT_ALONE.labels("no_room" if row is None else "refused").inc()
                        leftover.append(control)
                    else:
                        applied.append(outcome)
                if applied:
                    await cur.execute(b"EXECUTE rooms_write(%b); COMMIT" % writes.arguments(quote))
                else:
                    await cur.execute(b"COMMIT")
        except BaseException:
            await self._discard_or_keep(pg)
            raise
        self._idle.append(pg)
        for control, handoff in handed_off:  # after the commit: the caller moves on
            control.done.set_exception(handoff)
        after = {a.control.room: a.deadline_ms for a in applied}
        return applied, leftover, after

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        """A committer connection with the group's statements prepared on it. Autocommit:
        the transactions are in the statements (BEGIN ... COMMIT). Generic plans
        (db.keyed_connection): PostgreSQL had planned the write anew for every group, and
        planning took longer than running it (0.55 ms against 0.40); these statements only
        join on primary keys and the live-players index. No sequential scans: among 3,000
        rooms the generic plans had read whole tables into hash joins (a seek 1.46 ms; with
        index scans 1.07)."""
        pg = await db.keyed_connection(self._dsn)
        try:
            for name, types, statement in _PREPARED:
                await pg.execute(f"PREPARE {name}({types}) AS {statement}")
        except BaseException:
            await pg.close()
            raise
        return pg

    async def _discard_or_keep(self, pg: psycopg.AsyncConnection[Any]) -> None:
        """After a failed group: roll back and keep the connection, or drop one that cannot
        (a restart of PostgreSQL)."""
        try:
            await pg.rollback()
        except Exception:
            with contextlib.suppress(Exception):
                await pg.close()
            return
        self._idle.append(pg)


def text_array(values: list[str]) -> bytes:
    """A text[] value in PostgreSQL's array syntax, for libpq to quote as a literal: every
    element double-quoted, with its backslashes and double quotes escaped. (psycopg's
    `sql.Literal` took 7 µs a list warm, and a group quotes two.)"""
    elements = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return ("{" + ",".join(elements) + "}").encode()


def _apply(control: Control, row: Any, now: int, writes: _Writes) -> _Applied | None:
    """Apply one control to its room as read, queueing its writes; None leaves it to the
    ordinary path (refused, or its transition raised: that path raises it again). A
    transition's HandOff goes up to the group, which answers the control with it."""
    user = control.env.user
    standing = standing_of(row.owner_id, user.id, membership_of(row))
    if decide(control.command, standing, row.control_mode, user.admin) is not None:
        return None
    state = repo.playback_of(row)
    players = frozenset(row.players.split()) if row.players else frozenset()
    try:
        changed = control.transition(state, players, now)
    except HandOff:
        raise
    except Exception:
        return None
    room = control.room
    data = changed.contract_data()
    v, playback_v = int(row.seq_v), int(row.playback_v)
    event = None
    if data != state.contract_data():
        v += 1
        playback_v = v
        event = Published(
            events.subject_for("playback", room), events.encode("playback", room, v, data), room, v
        )
        writes.version(room, v)
    if changed != state:
        # Also when only bookkeeping clients never see changed (who is ready, who is in an
        # ad): stored without an event or a new version, as RoomTx does.
        writes.playback(room, changed, playback_v)
    reply = {"playback": data}
    writes.audit(control, now)
    writes.remember(control, reply, now)
    return _Applied(control, reply, event, changed.deadline_ms)
