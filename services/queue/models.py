"""The queue service's tables (it alone reads and writes them)."""

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import Base
from services.common.idempotency import CommandLogMixin


class QueueEntryRow(Base):
    __tablename__ = "queue_entries"
    __table_args__ = (Index("ix_queue_entries_room_state_pos", "room", "state", "pos"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    room: Mapped[str] = mapped_column(String(16))
    video_id: Mapped[str] = mapped_column(String(16))
    title: Mapped[str | None] = mapped_column(String(300), nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    thumbnail: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    added_by: Mapped[str] = mapped_column(String(64))
    added_by_name: Mapped[str] = mapped_column(String(40))
    # Order among the queued entries; renumbered 0..n-1 on every move (queues are short).
    pos: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(8))  # queued | current | done
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class QueueRoom(Base):
    __tablename__ = "queue_rooms"

    room: Mapped[str] = mapped_column(String(16), primary_key=True)
    current_entry_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    queue_v: Mapped[int] = mapped_column(BigInteger, default=0)


class QueueCommand(CommandLogMixin, Base):
    __tablename__ = "queue_commands"
