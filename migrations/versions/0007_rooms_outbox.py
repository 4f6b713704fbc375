"""Rooms' notices to the gateways (evictions) are written with the change that makes them, and
deleted once published: a replica that dies between its commit and its publish leaves the
notice for another replica to send.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 20:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rooms_outbox",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rooms_outbox_created_ms", "rooms_outbox", ["created_ms"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_rooms_outbox_created_ms", table_name="rooms_outbox")
    op.drop_table("rooms_outbox")
