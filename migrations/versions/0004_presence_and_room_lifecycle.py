"""presence: away sessions; room lifecycle: when a room last had a socket come or go

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rooms_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("away_since_ms", sa.BigInteger(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_rooms_sessions_away_since_ms"), ["away_since_ms"], unique=False
        )
    with op.batch_alter_table("rooms_rooms", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_active_ms", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rooms_rooms", schema=None) as batch_op:
        batch_op.drop_column("last_active_ms")
    with op.batch_alter_table("rooms_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rooms_sessions_away_since_ms"))
        batch_op.drop_column("away_since_ms")
