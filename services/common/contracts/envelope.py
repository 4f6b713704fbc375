"""What travels on the bus between the gateway and the services, and between services."""

from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import Field

from .base import Contract
from .errors import ErrorCode
from .events import EvictReason
from .models import PublicRoom, QueueEntry, Role, RoomSettings, UserRef

MAX_REQUEST_ID: Final = 64


class CommandEnvelope(Contract):
    """A command on `st.<service>.cmd.<name>`.

    `id` is the client's request id: together with the user it is the idempotency key, so a
    retried command is applied once. `conn` names the socket (gateway id + connection number),
    for commands whose effect is per connection (join as a player, ready, disconnect).
    """

    id: str = Field(min_length=1, max_length=MAX_REQUEST_ID)
    user: UserRef
    room: str | None = None
    conn: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    # `data` is validated (NUL refused or cleaned away) by the command's own model.
    nul_exempt: ClassVar[frozenset[str]] = frozenset({"data"})


# -- service to service ------------------------------------------------------------------


class AccessQuery(Contract):
    """`st.rooms.cmd.access`: may this user act on this room, and as what?"""

    room: str
    user_id: str
    # The client command the asker is about to apply: rooms then answers with its decision
    # for that command (`denied`), so the permission matrix lives in one place.
    command: str | None = None
    admin: bool = False


class AccessReply(Contract):
    member: bool
    role: Role | None
    banned: bool = False
    settings: RoomSettings
    denied: ErrorCode | None = None  # why `command` is refused; None = allowed


class AdvanceRequest(Contract):
    """`st.queue.cmd.advance`: take the next entry off the room's queue (rooms asks)."""

    room: str
    after_entry_id: str | None = None  # idempotency: advance only past this entry once


class AdvanceReply(Contract):
    entry: QueueEntry | None


class DisconnectNotice(Contract):
    """`st.rooms.cmd.disconnect`: a socket that had joined the room is gone."""

    room: str
    conn: str


class SequenceCheck(Contract):
    """`st.rooms.cmd.sequence_check`: a gateway relayed a command of this room that ended
    without a clear answer (`timeout`, or `internal`), so its publisher may have died between
    its commit and its publish. Rooms answers with the room's version, read under the room's
    lock (after the commands ahead of it, and their publishes). The gateway asks first
    without `resync`, gives the events up to that version time to arrive, and asks again
    with `resync` and the last version it delivered (`seen_v`) only if they did not: then,
    if the room's version is past `seen_v`, rooms publishes a `resync` event after it
    (`resynced`), and every gateway and member of the room reads a snapshot."""

    room: str = Field(min_length=1, max_length=16)
    seen_v: int = Field(ge=0)
    resync: bool = False


class SequenceCheckReply(Contract):
    v: int
    resynced: bool


MAX_SWEPT_ROOMS: Final = 1000


class RoomVersions(Contract):
    """`st.rooms.cmd.versions`: the committed version of each of these rooms, for a gateway's
    periodic sweep over the rooms it has members of (services/gateway/sequencesweep.py). A
    process that dies between a commit and its publish leaves the room's version past what
    the gateways delivered, even when no command of the room ended without an answer (rooms'
    start deadline, the janitor's jobs). Read without the rooms' locks:
    the sweep only picks rooms for a `SequenceCheck`, which reads under the lock."""

    rooms: list[Annotated[str, Field(min_length=1, max_length=16)]] = Field(
        min_length=1, max_length=MAX_SWEPT_ROOMS
    )


class RoomVersionsReply(Contract):
    versions: dict[str, int]  # rooms that exist; a closed room is left out


class GuestRequest(Contract):
    name: str = Field(min_length=1, max_length=40)

    # auth strips control characters from names (NUL among them) before it keeps one.
    nul_exempt: ClassVar[frozenset[str]] = frozenset({"name"})


class TokenReply(Contract):
    token: str
    user: UserRef


class DirectoryQuery(Contract):
    """`st.rooms.cmd.directory`: a page of the public rooms with members online."""

    limit: int = Field(default=50, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=100_000)


class DirectoryReply(Contract):
    rooms: list[PublicRoom]
    next_offset: int | None = None  # None: this was the last page


class QueueLengthsQuery(Contract):
    """`st.queue.cmd.lengths`: how many entries wait in each of these rooms (rooms asks,
    for the admin dashboard's `admin.rooms`)."""

    rooms: list[str] = Field(max_length=200)


class QueueLengthsReply(Contract):
    lengths: dict[str, int]  # rooms without a queue are absent (0)


class EvictNotice(Contract):
    """`st.gateway.evt.evict`, to every gateway: these sockets of a kicked or banned user
    leave the room's channel at once (their sessions are already gone in rooms). A closed
    room's notice names nobody (`user_id` and `conns` None): every socket in it leaves."""

    room: str
    user_id: str | None = None
    conns: list[str] | None = None  # None: every socket in the room
    reason: EvictReason


class StatsReply(Contract):
    """One process's answer to `st.stats.gather`.

    `process` figures are this replica's own and add up across replicas (connections,
    messages per second); `shared` figures are read from the service's database, the same in
    every replica, so they are counted once.
    """

    service: str
    instance: str
    process: dict[str, float] = Field(default_factory=dict)
    shared: dict[str, float] = Field(default_factory=dict)


# -- sign-in: the gateway's HTTP face asks auth ------------------------------------------


class GoogleStart(Contract):
    """`st.auth.cmd.google_start`: the provider URL to send the browser to, with a fresh
    state (PKCE verifier and nonce are kept by auth under it)."""

    # Where the browser takes the token at the end (a portal page, or the extension's
    # https://<id>.chromiumapp.org/ URL); auth allows only its allow-list.
    redirect_uri: str | None = Field(default=None, max_length=2048)
    # A guest's token: that user becomes the Google account (same user id).
    upgrade_token: str | None = Field(default=None, max_length=4096)
    # Passed on to the provider (OpenID Connect), which preselects that account.
    login_hint: str | None = Field(default=None, max_length=320)


class GoogleStartReply(Contract):
    url: str
    state: str


class GoogleFinish(Contract):
    """`st.auth.cmd.google_finish`: the provider sent the browser back with these."""

    state: str = Field(min_length=1, max_length=256)
    code: str | None = Field(default=None, max_length=4096)
    error: str | None = Field(default=None, max_length=256)  # the provider's, e.g. access_denied


class GoogleFinishReply(Contract):
    """The outcome to hand to the browser: a token, or an error, for `redirect_uri` (or for
    the page that opened the sign-in window when there is none)."""

    redirect_uri: str | None = None
    token: str | None = None
    user: UserRef | None = None
    error: ErrorCode | None = None
    message: str | None = None


class LogoutRequest(Contract):
    """`st.auth.cmd.logout`: the token stops working (its session id is revoked)."""

    token: str = Field(min_length=1, max_length=4096)


class SignoutNotice(Contract):
    """`st.gateway.evt.signout`, to every gateway: close the sockets of this session."""

    sid: str


# -- presence and upkeep: the janitor asks the owning services ---------------------------
# Every one of these is an internal command (services only) and idempotent: running it twice,
# or from two janitor leaders at once, does what running it once does.


class PresenceGateways(Contract):
    """`st.rooms.cmd.presence_gateways` reply: the gateways that hold live (not away) sessions."""

    gateways: list[str]


class PresenceSweep(Contract):
    """`st.rooms.cmd.presence_sweep`: the sessions of these gateways are gone (their process
    died: no heartbeat in Redis), so they become away; away sessions older than
    `away_before_ms` leave their rooms for good."""

    dead_gateways: list[str] = Field(default_factory=list, max_length=1000)
    away_before_ms: int = Field(ge=0)
    limit: int = Field(default=1000, ge=1, le=10_000)


class PresenceSweepReply(Contract):
    marked_away: int
    removed: int


class CloseIdleRooms(Contract):
    """`st.rooms.cmd.close_idle`: delete rooms nobody has been in since `empty_before_ms`."""

    empty_before_ms: int = Field(ge=0)
    limit: int = Field(default=100, ge=1, le=1000)


class ClosedRooms(Contract):
    rooms: list[str]


RetentionKind = Literal["audit", "commands", "messages", "entries", "guests"]


class RetentionRequest(Contract):
    """`st.<service>.cmd.retention`: delete up to `limit` rows of `kind` older than
    `before_ms`. A service answers only for the kinds it owns (others: `bad_request`):
    rooms `audit` and `commands`, queue `entries` (played) and `commands`, chat `messages`
    and `commands`, auth `guests` (never one whose token may still be valid)."""

    kind: RetentionKind
    before_ms: int = Field(ge=0)
    limit: int = Field(default=1000, ge=1, le=10_000)


class PurgeOrphans(Contract):
    """`st.queue.cmd.purge_orphans`, `st.chat.cmd.purge_orphans`: delete the rows of rooms
    that no longer exist (closed by rooms: their `room_seq` row is gone)."""

    limit: int = Field(default=1000, ge=1, le=10_000)


class RowsDeleted(Contract):
    deleted: int
