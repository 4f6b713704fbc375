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
3. one statement of data-modifying CTEs over arrays writes every changed room, every room's
   new version, the audit entries and the idempotency records; one commit.

Step 1's read is skipped for rooms this replica already knows (`_Known`: each room as its last
group read or wrote it): the lock, the write and the commit go in one round trip, and the write
checks that the room's row, the caller's membership and the players are still the versions
the control was applied to. A room changed since (a join, a `ready`, another replica's
command) is left out of the write, read and applied again: correct either way, and one round
trip instead of two while a room's controls come from this replica.

Then each control's event is published (with its own trace context) and it is answered.

Anything unusual is left to the ordinary path (`RoomsService.in_room`), which answers it as
it always did: a control the permission matrix refuses, a room that is gone (the ordinary path
then gives the error, or the reply remembered for a retried request id), and every control of
a group that fails as a whole (a request id already remembered, a lost connection).

Order: a control holds its room's local lock (`KeyedLocks`) from submission until it is
answered, so one room's commands still run one at a time in arrival order on this replica, and
a group never holds two controls of one room.
"""

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import Counter, Histogram
from psycopg.rows import namedtuple_row
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import bus, tracing
from services.common.contracts import events
from services.common.contracts.envelope import CommandEnvelope
from services.common.jsonutil import now_ms

from . import repository as repo
from .permissions import decide, standing_of
from .playback import PlaybackState
from .transaction import Published, membership_of

log = logging.getLogger(__name__)

MAX_GROUP = 128  # controls per transaction: bounds a group's statement and its lock set
# Groups in the database at once, each on a connection of its own. One: with two, each
# group took what was waiting sooner, groups got smaller and throughput fell (durable
# PostgreSQL, 16 in flight: 1,337 controls/s with two, 1,832 with one).
GROUPS_IN_FLIGHT = 1

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
GROUP_READS = Counter(
    "sharetube_rooms_control_group_reads_total",
    "Control groups by how their rooms were read",
    ["read"],  # remembered (one round trip), stale (a remembered room changed), read
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
    data: dict[str, Any] | None  # the playback event's data, when members see a change
    deadline_ms: int | None
    values: dict[str, Any] | None  # the room's playback columns as written (None: unchanged)
    event: Published | None = None  # once the write has counted the room's new version


# Lock the group's rooms (their sequence rows) in room order, so two replicas' groups cannot
# deadlock.
_LOCK = """
SELECT room FROM room_seq WHERE room = ANY(%(rooms)s::text[]) ORDER BY room FOR UPDATE
"""

# A room's live player sockets, in one order (so that their md5 is the set's fingerprint),
# from the index of live players (ix_rooms_sessions_live_players).
_PLAYERS = """
SELECT string_agg(x.conn, ' ' ORDER BY x.conn) AS players FROM rooms_sessions x
WHERE x.room = c.room AND x.player AND x.away_since_ms IS NULL
"""

# Then read what a control needs, in a statement of its own: it takes its snapshot after the
# locks are held, so it sees what the previous holder committed. (Locked and read in one
# statement, PostgreSQL re-reads only the locked row after waiting; the room row and the
# players would come from the statement's older snapshot, and be written back stale.)
# With each room come the versions `_WRITE` checks: the row versions (`xmin`) of the room and
# of the membership, and the fingerprint of the players.
_READ = f"""
SELECT c.user_id AS caller, r.*, r.xmin::text AS room_xmin, p.players,
       md5(p.players) AS players_md5, m.name AS m_name, m.role AS m_role,
       m.joined_at_ms AS m_joined_at_ms, m.banned AS m_banned, m.xmin::text AS m_xmin
FROM unnest(%(rooms)s::text[], %(users)s::text[]) AS c(room, user_id)
JOIN rooms_rooms r ON r.code = c.room
CROSS JOIN LATERAL ({_PLAYERS}) p
LEFT JOIN rooms_members m ON m.room = c.room AND m.user_id = c.user_id
"""

# Every write of a group in one statement (one row per room at most: see "Order" above),
# for the rooms whose control was applied to what is stored now: `ok` checks that the room's
# row, the caller's membership and the players are the versions the control was applied to
# (read under this lock, or remembered from this replica's last group: `_Known`). Its
# snapshot is taken after `_LOCK`, so what it sees stays true until the commit. A room's new
# version is counted here (`v + 1`): chat and the queue count in the same sequence, and
# their events change nothing a control reads. Returns each written room's new version and
# row version.
_WRITE = (
    """
WITH ok AS (
  SELECT c.room
  FROM unnest(%(g_room)s::text[], %(g_user)s::text[], %(g_room_xmin)s::text[],
              %(g_m_xmin)s::text[], %(g_players_md5)s::text[])
       AS c(room, user_id, room_xmin, m_xmin, players_md5)
  JOIN rooms_rooms r ON r.code = c.room AND r.xmin::text = c.room_xmin
  LEFT JOIN rooms_members m ON m.room = c.room AND m.user_id = c.user_id
  WHERE m.xmin::text IS NOT DISTINCT FROM c.m_xmin
    AND (SELECT md5(p.players) FROM ("""
    + _PLAYERS
    + """) p)
        IS NOT DISTINCT FROM c.players_md5
), seq AS (
  UPDATE room_seq q SET v = q.v + 1
  WHERE q.room = ANY(%(seq_rooms)s::text[]) AND q.room IN (SELECT room FROM ok)
  RETURNING q.room, q.v
), playback AS (
  UPDATE rooms_rooms r SET
    status = u.status, entry_id = u.entry_id, video_id = u.video_id, title = u.title,
    duration_ms = u.duration_ms, position_ms = u.position_ms, anchor_ms = u.anchor_ms,
    rate = u.rate, ready_conns = u.ready_conns, deadline_ms = u.deadline_ms,
    ad_conns = u.ad_conns, skip_votes = u.skip_votes,
    playback_v = coalesce(seq.v, u.playback_v)
  FROM unnest(
    %(code)s::text[], %(status)s::text[], %(entry_id)s::text[], %(video_id)s::text[],
    %(title)s::text[], %(duration_ms)s::bigint[], %(position_ms)s::bigint[],
    %(anchor_ms)s::bigint[], %(rate)s::float8[], %(ready_conns)s::text[],
    %(deadline_ms)s::bigint[], %(ad_conns)s::text[], %(skip_votes)s::text[],
    %(playback_v)s::bigint[]
  ) AS u(code, status, entry_id, video_id, title, duration_ms, position_ms, anchor_ms, rate,
         ready_conns, deadline_ms, ad_conns, skip_votes, playback_v)
  LEFT JOIN seq ON seq.room = u.code
  WHERE r.code = u.code AND u.code IN (SELECT room FROM ok)
  RETURNING r.code, r.xmin::text AS xmin, r.playback_v
), audit AS (
  INSERT INTO rooms_audit (room, at_ms, user_id, name, action, target_id, detail)
  SELECT a.room, a.at_ms, a.user_id, a.name, a.action, NULL, a.detail
  FROM unnest(%(a_room)s::text[], %(a_at_ms)s::bigint[], %(a_user_id)s::text[],
              %(a_name)s::text[], %(a_action)s::text[], %(a_detail)s::text[])
       AS a(room, at_ms, user_id, name, action, detail)
  WHERE a.room IN (SELECT room FROM ok)
), remembered AS (
  INSERT INTO rooms_commands (user_id, request_id, command, reply, at_ms)
  SELECT c.user_id, c.request_id, c.command, c.reply, c.at_ms
  FROM unnest(%(c_room)s::text[], %(c_user_id)s::text[], %(c_request_id)s::text[],
              %(c_command)s::text[], %(c_reply)s::bytea[], %(c_at_ms)s::bigint[])
       AS c(room, user_id, request_id, command, reply, at_ms)
  WHERE c.room IN (SELECT room FROM ok)
)
SELECT ok.room, seq.v, playback.xmin, playback.playback_v
FROM ok LEFT JOIN seq ON seq.room = ok.room LEFT JOIN playback ON playback.code = ok.room
"""
)

_PLAYBACK_COLUMNS = (
    "status",
    "entry_id",
    "video_id",
    "title",
    "duration_ms",
    "position_ms",
    "anchor_ms",
    "rate",
    "ready_conns",
    "deadline_ms",
    "ad_conns",
    "skip_votes",
    "playback_v",
)


# The caller's membership as `_READ` gives it (None for "not a member", with its version).
_MEMBER_COLUMNS = ("m_name", "m_role", "m_joined_at_ms", "m_banned", "m_xmin")
KNOWN_ROOMS = 1024  # rooms a replica remembers (least recently used go first)
KNOWN_CALLERS = 64  # memberships remembered per room


class _Known:
    """Each room as this replica's groups last read or wrote it, with the caller memberships
    they read. A group whose rooms and callers are all known skips the read: `_WRITE` checks
    the versions remembered here, and a room changed since (by the ordinary path, another
    replica, a join) is read again. So a room's controls cost one round trip, not two."""

    def __init__(self, size: int = KNOWN_ROOMS) -> None:
        self._size = size
        self._rooms: OrderedDict[str, tuple[Any, dict[str, tuple[Any, ...]]]] = OrderedDict()

    def row(self, room: str, user_id: str) -> Any | None:
        """The room as last known, with `user_id`'s membership; None if either is unknown."""
        entry = self._rooms.get(room)
        if entry is None:
            return None
        row, callers = entry
        member = callers.get(user_id)
        if member is None:
            return None
        self._rooms.move_to_end(room)
        return row._replace(**dict(zip(_MEMBER_COLUMNS, member, strict=True)))

    def read(self, row: Any) -> None:
        """A row `_READ` gave: the room as stored, and its caller's membership."""
        entry = self._rooms.get(row.code)
        callers = entry[1] if entry is not None else {}
        if len(callers) >= KNOWN_CALLERS:
            callers = {}
        callers[row.caller] = tuple(getattr(row, column) for column in _MEMBER_COLUMNS)
        self._rooms[row.code] = (row, callers)
        self._rooms.move_to_end(row.code)
        while len(self._rooms) > self._size:
            self._rooms.popitem(last=False)

    def wrote(self, room: str, values: dict[str, Any], xmin: str, playback_v: int) -> None:
        """The room's playback columns as this replica's group just wrote them."""
        entry = self._rooms.get(room)
        if entry is not None:
            row = entry[0]._replace(**{**values, "room_xmin": xmin, "playback_v": playback_v})
            self._rooms[room] = (row, entry[1])

    def forget(self, room: str) -> None:
        self._rooms.pop(room, None)


class _Writes:
    """The arrays of one group's write statement."""

    def __init__(self) -> None:
        self.params: dict[str, list[Any]] = {
            name: []
            for name in (
                "g_room",
                "g_user",
                "g_room_xmin",
                "g_m_xmin",
                "g_players_md5",
                "seq_rooms",
                "code",
                *_PLAYBACK_COLUMNS,
                "a_room",
                "a_at_ms",
                "a_user_id",
                "a_name",
                "a_action",
                "a_detail",
                "c_room",
                "c_user_id",
                "c_request_id",
                "c_command",
                "c_reply",
                "c_at_ms",
            )
        }

    def applied_to(self, control: Control, row: Any) -> None:
        """The versions the control was applied to, which the write checks."""
        p = self.params
        p["g_room"].append(control.room)
        p["g_user"].append(control.env.user.id)
        p["g_room_xmin"].append(row.room_xmin)
        p["g_m_xmin"].append(row.m_xmin)
        p["g_players_md5"].append(row.players_md5)

    def new_version(self, room: str) -> None:
        self.params["seq_rooms"].append(room)

    def playback(self, room: str, values: dict[str, Any]) -> None:
        self.params["code"].append(room)
        for column, value in values.items():
            self.params[column].append(value)

    def audit(self, control: Control, at_ms: int) -> None:
        user = control.env.user
        p = self.params
        p["a_room"].append(control.room)
        p["a_at_ms"].append(at_ms)
        p["a_user_id"].append(user.id)
        p["a_name"].append(user.name[:40])
        p["a_action"].append(control.command)
        p["a_detail"].append(orjson.dumps(control.detail or {}).decode())

    def remember(self, control: Control, reply: dict[str, Any], at_ms: int) -> None:
        p = self.params
        p["c_room"].append(control.room)
        p["c_user_id"].append(control.env.user.id)
        p["c_request_id"].append(control.env.id)
        p["c_command"].append(control.command)
        p["c_reply"].append(orjson.dumps(reply))
        p["c_at_ms"].append(at_ms)


Alone = Callable[[Control], Awaitable[dict[str, Any]]]


@dataclass(slots=True)
class _Group:
    """A group's outcome: what was applied, what the ordinary path must take, and what was
    applied to (or refused by) a remembered room that may have changed: to read and apply
    again."""

    applied: list[_Applied] = field(default_factory=list)
    leftover: list[Control] = field(default_factory=list)
    stale: list[Control] = field(default_factory=list)


class GroupCommitter:
    """Collects controls and commits them in groups, GROUPS_IN_FLIGHT at a time."""

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
        self._waiting: list[Control] = []
        self._running: set[asyncio.Task[None]] = set()
        self._dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._idle: list[psycopg.AsyncConnection[Any]] = []  # one per group in flight at most
        self._known = _Known()

    async def submit(self, control: Control) -> dict[str, Any]:
        """Apply `control` in the next group; its reply (or its error)."""
        self._waiting.append(control)
        self._start_groups()
        return await control.done

    async def aclose(self) -> None:
        """Stop: groups under way are cancelled (their callers get an error), and the
        committer's connections are closed."""
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        idle, self._idle = self._idle, []
        for pg in idle:
            with contextlib.suppress(Exception):
                await pg.close()

    def _start_groups(self) -> None:
        """Start a group of what waits while fewer than GROUPS_IN_FLIGHT are in the
        database; what arrives meanwhile waits for a group to finish, and goes together."""
        while self._waiting and len(self._running) < GROUPS_IN_FLIGHT:
            group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
            task = asyncio.get_running_loop().create_task(self._run(group))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start_groups()

    async def _run(self, group: list[Control]) -> None:
        GROUP_SIZE.observe(len(group))
        try:
            await self._commit(group)
        except Exception:
            log.exception("control group failed")
        finally:
            for control in group:  # never leave a caller waiting
                if not control.done.done():
                    control.done.set_exception(RuntimeError("control not applied"))

    async def _commit(self, group: list[Control]) -> None:
        first = group[0]
        links = [
            trace.Link(trace.get_current_span(c.trace_context).get_span_context())
            for c in group[1:]
        ]
        with tracing.tracer.start_as_current_span(
            "rooms group commit",
            context=first.trace_context,
            links=links,
            attributes={"sharetube.group_size": len(group)},
        ):
            try:
                outcome = await self._transaction(group)
            except Exception as exc:
                if not (bus.is_outage(exc) or isinstance(exc, psycopg.OperationalError)):
                    log.warning("control group of %d rolled back: %r", len(group), exc)
                LEFT_ALONE.labels("group_failed").inc(len(group))
                for control in group:
                    self._known.forget(control.room)
                outcome = _Group(leftover=list(group))
        for applied in outcome.applied:
            self._schedule(applied.control.room, applied.deadline_ms)
        for applied in outcome.applied:
            if applied.event is not None:
                token = otel_context.attach(applied.control.trace_context)
                try:
                    await self._publish([applied.event])
                except Exception:  # committed: members see it on their next resync
                    log.exception("playback event of %s not published", applied.control.room)
                finally:
                    otel_context.detach(token)
            applied.control.done.set_result(applied.reply)
        if outcome.leftover:
            await asyncio.gather(*(self._run_alone(c) for c in outcome.leftover))

    async def _run_alone(self, control: Control) -> None:
        token = otel_context.attach(control.trace_context)
        try:
            control.done.set_result(await self._alone(control))
        except BaseException as exc:
            if not control.done.done():
                control.done.set_exception(exc)
        finally:
            otel_context.detach(token)

    async def _transaction(self, group: list[Control]) -> _Group:
        """Apply the group in one transaction: one round trip (lock, checked write, commit)
        when every room and caller is known, else two (lock and read, then write and commit).
        A known room that changed since is read and applied again in a second transaction."""
        pg = self._idle.pop() if self._idle else await self._connect()
        try:
            remembered = [self._known.row(c.room, c.env.user.id) for c in group]
            if all(row is not None for row in remembered):
                GROUP_READS.labels("remembered").inc()
                outcome = await self._apply_group(pg, group, remembered)
                if outcome.stale:
                    GROUP_READS.labels("stale").inc()
                    again = await self._apply_group(pg, outcome.stale, None)
                    outcome.applied += again.applied
                    outcome.leftover += again.leftover + again.stale
            else:
                GROUP_READS.labels("read").inc()
                outcome = await self._apply_group(pg, group, None)
                outcome.leftover += outcome.stale  # read under the lock: cannot be stale
        except BaseException:
            await self._discard_or_keep(pg)
            raise
        self._idle.append(pg)
        return outcome

    async def _apply_group(
        self, pg: psycopg.AsyncConnection[Any], group: list[Control], remembered: list[Any] | None
    ) -> _Group:
        """One transaction in pipeline mode: the lock (and the read, unless each room is
        `remembered`), the controls applied in Python, the write and the commit."""
        outcome = _Group()
        rooms = [c.room for c in group]
        async with pg.pipeline(), pg.cursor(row_factory=namedtuple_row) as cur:
            await pg.execute(_LOCK, {"rooms": rooms})  # sent with what follows
            if remembered is None:
                await cur.execute(_READ, {"rooms": rooms, "users": [c.env.user.id for c in group]})
                read = {row.code: row for row in await cur.fetchall()}  # the round trip
                rows = [read.get(room) for room in rooms]
            else:
                rows = remembered
            writes = _Writes()
            now = now_ms()
            for control, row in zip(group, rows, strict=True):
                if remembered is None:
                    if row is None:
                        self._known.forget(control.room)
                    else:
                        self._known.read(row)
                applied = None if row is None else _apply(control, row, now, writes)
                if applied is not None:
                    outcome.applied.append(applied)
                elif remembered is not None:
                    # Refused by the room as remembered: it may have changed since (a video
                    # loaded, a member promoted). Read it, and decide again.
                    self._known.forget(control.room)
                    outcome.stale.append(control)
                else:
                    LEFT_ALONE.labels("no_room" if row is None else "refused").inc()
                    outcome.leftover.append(control)
            if outcome.applied:
                await cur.execute(_WRITE, writes.params)
            await pg.commit()
            written = {row.room: row for row in await cur.fetchall()} if outcome.applied else {}
        applied_now = []
        for applied in outcome.applied:
            room = applied.control.room
            result = written.get(room)
            if result is None or (applied.data is not None and result.v is None):
                self._known.forget(room)
                outcome.stale.append(applied.control)
                continue
            if applied.values is not None:
                self._known.wrote(room, applied.values, result.xmin, int(result.playback_v))
            if applied.data is not None:
                payload = events.encode("playback", room, int(result.v), applied.data)
                applied.event = Published(events.subject_for("playback", room), payload)
            applied_now.append(applied)
        outcome.applied = applied_now
        return outcome

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        """The committer's own connections: skipping the pool skips its checkout ping and
        bookkeeping on every group.

        Generic plans: psycopg prepares the three statements, but PostgreSQL kept planning
        the write anew for every group (its generic plan, costed for ten rows per array,
        looked dearer than a plan for the actual one), and planning it took longer than
        running it (0.55 ms against 0.40). These statements only join on primary keys and
        the live-players index, so one plan serves every group."""
        return await psycopg.AsyncConnection.connect(
            self._dsn, connect_timeout=5, options="-c plan_cache_mode=force_generic_plan"
        )

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


def _apply(control: Control, row: Any, now: int, writes: _Writes) -> _Applied | None:
    """Apply one control to its room as read (or remembered), queueing its writes; None
    leaves it to the ordinary path (refused, or its transition raised: that path raises it
    again, on the room as stored)."""
    user = control.env.user
    standing = standing_of(row.owner_id, user.id, membership_of(row))
    if decide(control.command, standing, row.control_mode, user.admin) is not None:
        return None
    state = repo.playback_of(row)
    players = frozenset(row.players.split()) if row.players else frozenset()
    try:
        changed = control.transition(state, players, now)
    except Exception:
        return None
    room = control.room
    contract = changed.to_contract()
    data = contract.model_dump()
    seen = contract != state.to_contract()  # members see it: a new version and an event
    if seen:
        writes.new_version(room)
    values = None
    if changed != state:
        # Also when only bookkeeping clients never see changed (who is ready, who is in an
        # ad): stored without an event or a new version, as RoomTx does. A new version is
        # the written `playback_v` (the statement counts it).
        values = repo.playback_values(changed, int(row.playback_v))
        writes.playback(room, values)
    writes.applied_to(control, row)
    reply = {"playback": data}
    writes.audit(control, now)
    writes.remember(control, reply, now)
    return _Applied(control, reply, data if seen else None, changed.deadline_ms, values)
