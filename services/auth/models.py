"""The auth service's tables (it alone reads and writes them)."""

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import Base


class User(Base):
    __tablename__ = "auth_users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))  # guest | google
    email: Mapped[str | None] = mapped_column(String(320), nullable=True, unique=True)
    # The provider's subject (`sub`): the stable key of a Google identity (emails change).
    google_sub: Mapped[str | None] = mapped_column(String(255), nullable=True, unique=True)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    last_seen_ms: Mapped[int] = mapped_column(BigInteger, index=True)
