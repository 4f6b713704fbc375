"""room policy settings, ads and skip votes on the playback, and the rooms audit

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Server defaults fill the rooms that exist already.
    with op.batch_alter_table("rooms_rooms", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("vote_skip_ratio", sa.Float(), nullable=False, server_default="0.5")
        )
        batch_op.add_column(
            sa.Column("queue_limit_per_user", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("ad_conns", sa.Text(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("skip_votes", sa.Text(), nullable=False, server_default="[]"))

    op.create_table(
        "rooms_audit",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("room", sa.String(length=16), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=40), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rooms_audit")),
    )
    with op.batch_alter_table("rooms_audit", schema=None) as batch_op:
        batch_op.create_index("ix_rooms_audit_room_id", ["room", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_rooms_audit_at_ms"), ["at_ms"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("rooms_audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rooms_audit_at_ms"))
        batch_op.drop_index("ix_rooms_audit_room_id")
    op.drop_table("rooms_audit")
    with op.batch_alter_table("rooms_rooms", schema=None) as batch_op:
        batch_op.drop_column("skip_votes")
        batch_op.drop_column("ad_conns")
        batch_op.drop_column("queue_limit_per_user")
        batch_op.drop_column("vote_skip_ratio")
