"""chat messages, their rooms' chat version and command log; Google identities of users

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("room", sa.String(length=16), nullable=False),
        sa.Column("v", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("deleted_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("deleted_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_messages")),
    )
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.create_index("ix_chat_messages_room_v", ["room", "v"], unique=True)
        batch_op.create_index(batch_op.f("ix_chat_messages_at_ms"), ["at_ms"], unique=False)

    op.create_table(
        "chat_rooms",
        sa.Column("room", sa.String(length=16), nullable=False),
        sa.Column("chat_v", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("room", name=op.f("pk_chat_rooms")),
    )
    op.create_table(
        "chat_commands",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("command", sa.String(length=32), nullable=False),
        sa.Column("reply", sa.LargeBinary(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "request_id", name=op.f("pk_chat_commands")),
    )
    with op.batch_alter_table("chat_commands", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chat_commands_at_ms"), ["at_ms"], unique=False)

    with op.batch_alter_table("auth_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("google_sub", sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_auth_users_google_sub"), ["google_sub"])


def downgrade() -> None:
    with op.batch_alter_table("auth_users", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_auth_users_google_sub"), type_="unique")
        batch_op.drop_column("google_sub")

    with op.batch_alter_table("chat_commands", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chat_commands_at_ms"))
    op.drop_table("chat_commands")
    op.drop_table("chat_rooms")
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chat_messages_at_ms"))
        batch_op.drop_index("ix_chat_messages_room_v")
    op.drop_table("chat_messages")
