"""The chat service's tables (it alone reads and writes them)."""

from sqlalchemy import BigInteger, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import Base
from services.common.idempotency import CommandLogMixin


class ChatMessageRow(Base):
    __tablename__ = "chat_messages"
    # History pages walk one room's messages by version, newest first.
    __table_args__ = (Index("ix_chat_messages_room_v", "room", "v", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    room: Mapped[str] = mapped_column(String(16))
    # The room version of the event that published it: orders a room's messages, and a
    # history read at chat version V shows exactly the messages with v <= V.
    v: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(40))
    text: Mapped[str] = mapped_column(Text)
    at_ms: Mapped[int] = mapped_column(BigInteger, index=True)  # retention goes by time
    # Deleted by a moderator: kept for the record, never shown again.
    deleted_at_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    deleted_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ChatRoom(Base):
    __tablename__ = "chat_rooms"

    room: Mapped[str] = mapped_column(String(16), primary_key=True)
    chat_v: Mapped[int] = mapped_column(BigInteger, default=0)


class ChatCommand(CommandLogMixin, Base):
    __tablename__ = "chat_commands"
