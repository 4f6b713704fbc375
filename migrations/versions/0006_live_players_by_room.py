"""A room's live players by room: every playback control and every locked room command
reads them. Without this index PostgreSQL took them from the index of all live sessions
(`away_since_ms IS NULL`) and filtered by room, so a command's cost grew with every socket in
every room.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 03:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE_PLAYER = sa.text("player AND away_since_ms IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_rooms_sessions_live_players",
        "rooms_sessions",
        ["room", "conn"],
        unique=False,
        postgresql_where=LIVE_PLAYER,
        sqlite_where=LIVE_PLAYER,
    )


def downgrade() -> None:
    op.drop_index("ix_rooms_sessions_live_players", table_name="rooms_sessions")
