"""The rooms service's tables (it alone reads and writes them)."""

from sqlalchemy import BigInteger, Boolean, Float, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import Base
from services.common.idempotency import CommandLogMixin


class Room(Base):
    __tablename__ = "rooms_rooms"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(64))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(80))
    visibility: Mapped[str] = mapped_column(String(16))
    control_mode: Mapped[str] = mapped_column(String(16))
    ad_sync: Mapped[str] = mapped_column(String(16))
    auto_advance: Mapped[bool] = mapped_column(Boolean)
    vote_skip_ratio: Mapped[float] = mapped_column(Float, default=0.5)
    queue_limit_per_user: Mapped[int] = mapped_column(Integer, default=0)
    # playback
    status: Mapped[str] = mapped_column(String(16), default="idle")
    entry_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    video_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    title: Mapped[str | None] = mapped_column(String(300), nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    position_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    anchor_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    rate: Mapped[float] = mapped_column(Float, default=1.0)
    # Connections that reported `ready` for the entry being started (JSON list).
    ready_conns: Mapped[str] = mapped_column(Text, default="[]")
    # Player connections in a counted ad, and users who voted to skip the entry (JSON lists).
    ad_conns: Mapped[str] = mapped_column(Text, default="[]")
    skip_votes: Mapped[str] = mapped_column(Text, default="[]")
    # When the room needs attention without a command: the end of `starting`'s wait, or the
    # end of the video while playing. Swept by every replica; the room lock makes it safe.
    deadline_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    # The room version at which each part last changed (see common.sequencer).
    playback_v: Mapped[int] = mapped_column(BigInteger, default=0)
    members_v: Mapped[int] = mapped_column(BigInteger, default=0)
    settings_v: Mapped[int] = mapped_column(BigInteger, default=0)
    # When a socket last joined or left (None: never since creation). A room with no session
    # whose last activity is older than the janitor's ROOM_CLOSE_AFTER_EMPTY_SECONDS closes.
    last_active_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Membership(Base):
    __tablename__ = "rooms_members"

    room: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    role: Mapped[str] = mapped_column(String(16))
    joined_at_ms: Mapped[int] = mapped_column(BigInteger)
    banned: Mapped[bool] = mapped_column(Boolean, default=False)


class RoomSession(Base):
    """One socket in one room: a member is online while they have one; players gate starts."""

    __tablename__ = "rooms_sessions"
    # A room's sessions are read by every command (live players, presence); the primary key
    # starts with the socket, so without this each read scanned every room's sessions.
    # A room's live players are read by every playback control (controls.py) and locked
    # command (repository.lock_room): by room, from this index alone.
    __table_args__ = (
        Index("ix_rooms_sessions_room_user", "room", "user_id"),
        Index(
            "ix_rooms_sessions_live_players",
            "room",
            "conn",
            postgresql_where=text("player AND away_since_ms IS NULL"),
            sqlite_where=text("player AND away_since_ms IS NULL"),
        ),
    )

    conn: Mapped[str] = mapped_column(String(80), primary_key=True)
    room: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    player: Mapped[bool] = mapped_column(Boolean)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    # Set when the socket dropped without a `leave` (or its gateway died): the member shows
    # away and keeps their place until the janitor's presence timeout removes the session.
    away_since_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)


class RoomsCommand(CommandLogMixin, Base):
    __tablename__ = "rooms_commands"


class RoomAudit(Base):
    """Who did what in a room, written in the transaction of the change itself. Read by the
    owner and admins (`room.audit`); the janitor trims old rows."""

    __tablename__ = "rooms_audit"
    __table_args__ = (Index("ix_rooms_audit_room_id", "room", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    room: Mapped[str] = mapped_column(String(16))
    at_ms: Mapped[int] = mapped_column(BigInteger, index=True)  # retention sweeps by age
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    name: Mapped[str | None] = mapped_column(String(40), nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="{}")


TABLES = [
    Room.__table__,
    Membership.__table__,
    RoomSession.__table__,
    RoomsCommand.__table__,
    RoomAudit.__table__,
]


class RoomNotice(Base):
    """A notice to the gateways (an eviction), written in the transaction of the change that
    makes it and deleted once published. A replica that dies between the commit and the
    publish leaves it here, and any replica's sweep sends it (services/rooms/outbox.py)."""

    __tablename__ = "rooms_outbox"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject: Mapped[str] = mapped_column(String(200))
    payload: Mapped[str] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger, index=True)
