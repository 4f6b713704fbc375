"""rooms_sessions by room: every command reads a room's sessions (its live players, its
members' presence), and the primary key (conn, room) cannot serve that, so each read scanned
every session of every room.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 22:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rooms_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_rooms_sessions_room_user", ["room", "user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("rooms_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_rooms_sessions_room_user")
