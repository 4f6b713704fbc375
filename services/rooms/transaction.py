"""One command's view of one room, inside the room's lock, and the events it produces.

A command loads the room, changes parts through this object, and `commit` writes what changed,
gives each changed part the next room version, and returns the encoded events to publish once
the transaction has committed.
"""

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common import sequencer
from services.common.contracts import events, subjects
from services.common.contracts.envelope import EvictNotice
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.events import EvictReason
from services.common.contracts.models import Role, RoomSettings, UserRef
from services.common.jsonutil import now_ms
from services.common.writes import WriteBatch

from . import outbox
from . import repository as repo
from .permissions import Standing, standing_of
from .permissions import role_of as role_for
from .playback import PlaybackState


@dataclass(frozen=True, slots=True)
class Published:
    subject: str
    payload: bytes
    # A room event's room and version (None for a notice to the gateways): what to repair
    # if its publish fails after the commit.
    room: str | None = None
    v: int | None = None
    # A notice's row in the outbox (outbox.py): deleted once the notice is sent.
    notice_id: str | None = None


@dataclass(frozen=True, slots=True)
class _Membership:
    """A rooms_members row as read with the room (repository.lock_room)."""

    name: str
    role: str
    joined_at_ms: int
    banned: bool


def membership_of(row: Any) -> _Membership | None:
    """The caller's membership from a row read with its room (`m_*` columns)."""
    if row.m_role is None:
        return None
    return _Membership(row.m_name, row.m_role, row.m_joined_at_ms, row.m_banned)


class RoomTx:
    def __init__(
        self, conn: AsyncConnection, row: Any, v: int, known: dict[str, Any] | None = None
    ) -> None:
        self.conn = conn
        # Writes sent together at commit (one round trip on PostgreSQL).
        self.writes = WriteBatch()
        # Memberships read with the room: user id -> row, or None for "not a member".
        self._known = known or {}
        self.row = row
        self.code: str = row.code
        self.v = v
        self.playback = repo.playback_of(row)
        self.settings = repo.settings_of(row)
        self._playback_changed = False
        self._settings_changed = False
        self._members_changed = False
        # The users whose listing a change touched (a `members` event carries just them), or
        # None once a change said nothing about whom it touched (the event carries the list).
        self._members_touched: set[str] | None = set()
        self._players: frozenset[str] | None = None
        # The room's whole member list as of this transaction's writes so far (`members_listed`).
        self._listed: list[dict[str, Any]] | None = None
        self._active_at_ms: int | None = None  # a socket came: the room is not idle
        self._published: list[Published] = []
        # Notices to publish after this transaction's events (evictions for the gateways).
        self._notices: list[Published] = []
        self._playback_seen = self.playback.contract_data()
        # Each part's version as of this transaction's writes (a snapshot's `versions`).
        self._playback_v: int = row.playback_v
        self._members_v: int = row.members_v
        self._settings_v: int = row.settings_v
        self.closed = False  # deleted by `close`: nothing more is written

    @classmethod
    async def open(cls, conn: AsyncConnection, code: str, user_id: str | None = None) -> "RoomTx":
        """Lock the room, then read it with the membership of `user_id` (usually the caller)
        in one statement (repository.lock_room)."""
        row = await repo.lock_room(conn, code, user_id)
        if row is None:
            raise ServiceError(ErrorCode.NOT_FOUND, "No such room.")
        known: dict[str, Any] = {}
        if user_id is not None:
            known[user_id] = membership_of(row)
        tx = cls(conn, row, int(row.seq_v), known)
        tx._players = frozenset(row.players.split()) if row.players else frozenset()
        return tx

    async def membership(self, user_id: str) -> Any | None:
        """`user_id`'s membership (name, role, joined_at_ms, banned), or None: as read with
        the room when it was the caller, else read now (and kept until a change)."""
        if user_id not in self._known:
            self._known[user_id] = await repo.get_membership(self.conn, self.code, user_id)
        return self._known[user_id]

    async def know_memberships(self, user_ids: list[str]) -> None:
        """Read the memberships of these users not known yet, in one statement (joins that
        go in together)."""
        unknown = {u for u in user_ids if u not in self._known}
        if unknown:
            found = await repo.memberships(self.conn, self.code, unknown)
            for user_id in unknown:
                self._known[user_id] = found.get(user_id)

    async def standing_of(self, user_id: str) -> Standing:
        return standing_of(self.row.owner_id, user_id, await self.membership(user_id))

    async def role_of(self, user: UserRef) -> Role | None:
        return role_for(await self.standing_of(user.id))

    async def audit(
        self,
        actor: UserRef | None,
        action: str,
        target_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record who did what, in this transaction: the entry exists iff the change does."""
        self.writes.add(
            repo.audit_insert(
                room=self.code,
                at_ms=now_ms(),
                user_id=actor.id if actor else None,
                name=actor.name[:40] if actor else None,
                action=action,
                target_id=target_id,
                detail=orjson.dumps(detail or {}).decode(),
            )
        )

    def evict(self, user_id: str, conns: list[str], reason: EvictReason) -> None:
        """Tell every gateway to take these sockets out of the room's channel (after commit)."""
        if conns:
            self._notify(EvictNotice(room=self.code, user_id=user_id, conns=conns, reason=reason))

    async def close(self, actor: UserRef) -> None:
        """Delete the room for good, the way the janitor closes an idle one (`delete_room`:
        its rows and its sequence, so later commands get `not_found`; the queue's and chat's
        rows of it become orphans their services purge), and after commit tell every
        gateway to take every socket out of it."""
        await repo.delete_room(self.conn, self.code)
        # Written after the delete, which takes the room's audit with it: this entry stays
        # (the dashboard's recent activity shows it) until audit retention trims it.
        await self.audit(actor, "room.close")
        self.closed = True
        self._notify(EvictNotice(room=self.code, reason="closed"))

    def _notify(self, notice: EvictNotice) -> None:
        """Publish after commit; kept in the outbox with this transaction's writes until then."""
        subject, payload = subjects.gateway_notice("evict"), notice.model_dump_json().encode()
        notice_id = outbox.write(self.writes, subject, payload)
        self._notices.append(Published(subject, payload, notice_id=notice_id))

    async def players(self) -> frozenset[str]:
        if self._players is None:
            self._players = await repo.players(self.conn, self.code)
        return self._players

    def set_playback(self, state: PlaybackState) -> None:
        if state != self.playback:
            self.playback = state
            self._playback_changed = True

    def set_settings(self, settings: RoomSettings) -> None:
        if settings != self.settings:
            self.settings = settings
            self._settings_changed = True

    def members_changed(self, *user_ids: str) -> None:
        """Memberships, roles or sessions of these users changed: the `members` event at
        commit carries their entries (`MembersDelta`). Without user ids, the whole list."""
        self._members_changed = True
        if not user_ids:
            self._members_touched = None
        elif self._members_touched is not None:
            self._members_touched.update(user_ids)
        self._players = None
        self._listed = None
        self._known.clear()  # a role, a ban or a membership changed under us

    def active_at(self, at_ms: int) -> None:
        """A socket came into the room: it is not idle (repository.idle_rooms); written with
        the room's row at commit."""
        self._active_at_ms = at_ms

    def members_listed(self, listed: list[dict[str, Any]]) -> None:
        """The room's whole list, read after this transaction's changes of members (a join
        reads it for its snapshot): the `members` event at commit takes its entries from it
        instead of reading them again."""
        self._listed = listed

    @property
    def playback_changed(self) -> bool:
        return self._playback_changed

    async def commit(self) -> list[Published]:
        """Write what changed with fresh versions; return every event of this transaction so
        far, in version order (a command may commit midway to read its own writes), then the
        notices. A closed room has nothing left to write: its eviction tells the sockets."""
        out = self._published
        if not self.closed:
            await self._write_changes(out)
        await self.writes.flush(self.conn)
        out.extend(self._notices)
        self._notices = []
        return out

    async def _write_changes(self, out: list[Published]) -> None:
        """Queue one UPDATE of the room's row with every changed part and its version, and
        the room's new version (flushed by `commit` with the audit and idempotency rows)."""
        v = self.v
        values: dict[str, Any] = {}
        if self._settings_changed:
            v += 1
            self._settings_v = v
            values.update(repo.settings_values(self.settings, v))
            out.append(self._event("settings", v, self.settings.model_dump()))
        if self._members_changed:
            v += 1
            self._members_v = v
            values["members_v"] = v
            out.append(self._event("members", v, await self._members_data()))
        if self._playback_changed:
            contract = self.playback.contract_data()
            if contract != self._playback_seen:
                v += 1
                self._playback_v = v
                self._playback_seen = contract
                out.append(self._event("playback", v, contract))
            # Otherwise only the bookkeeping clients never see changed (who is ready, who is
            # in an ad): stored without an event or a new version.
            values.update(repo.playback_values(self.playback, self._playback_v))
        if self._active_at_ms is not None:
            values["last_active_ms"] = self._active_at_ms
            self._active_at_ms = None
        if values:
            self.writes.add(repo.room_update(self.code, values))
        if v != self.v:
            self.writes.add(sequencer.advance_statement(self.code, v))
            self.v = v
        self._settings_changed = self._members_changed = self._playback_changed = False
        self._members_touched = set()

    async def _members_data(self) -> Any:
        """A `members` event's data: the touched users' entries (`MembersDelta`), read alone
        so the event's size does not grow with the room; the whole list when a change did
        not say whom it touched."""
        touched = self._members_touched
        if touched is None:
            if self._listed is not None:
                return self._listed
            return await repo.member_list(self.conn, self.code)
        if self._listed is not None:
            entries = [m for m in self._listed if m["user_id"] in touched]
        else:
            entries = await repo.member_entries(self.conn, self.code, user_ids=touched)
        listed = {m["user_id"] for m in entries}
        return {"changed": entries, "gone": sorted(touched - listed)}

    def _event(self, event_type: events.EventType, v: int, data: Any) -> Published:
        return Published(
            events.subject_for(event_type, self.code),
            events.encode(event_type, self.code, v, data),
            self.code,
            v,
        )

    async def snapshot_part(self, members: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The rooms part of a join snapshot, as of this transaction (after its writes), with
        `members` as the list when it was read already. The room comes from what this
        transaction read under the lock and wrote since, not from reading it again: a join
        had made a round trip after its commit's write for what it had just written."""
        if self._settings_changed or self._members_changed or self._playback_changed:
            raise RuntimeError("a snapshot of changes not written yet")
        if members is None:
            members = await repo.member_list(self.conn, self.code)
        return {
            "room": repo.room_info(self.row).model_dump(),
            "settings": self.settings.model_dump(),
            "members": members,
            "playback": self.playback.contract_data(),
            "seq": self.v,  # read under the room's lock: exactly the room's version
            "versions": {
                "playback": self._playback_v,
                "members": self._members_v,
                "settings": self._settings_v,
            },
        }
