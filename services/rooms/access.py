"""Access checks read in batches: the question chat and the queue ask before every command.

Every chat message and queue command asks rooms whether its caller may (`st.rooms.cmd.access`):
one read of the room's settings and the caller's membership. Through SQLAlchemy's pool that
read cost rooms about 0.6 ms of CPU, as much as chat spent on the message it guarded. Here
the questions that arrive while a batch is in the database go together in the next one
(services/common/batchedreads.py): one prepared statement over arrays of (room, user).

PostgreSQL only (the arrays are its); other databases keep the ordinary read.
"""

from collections.abc import Sequence
from typing import Any

from prometheus_client import Histogram

from services.common.batchedreads import BATCH_BUCKETS, READ_TIMEOUT_S, BatchedReads

BATCH_SIZE = Histogram(
    "sharetube_rooms_access_batch_size",
    "Access checks read together in one statement",
    buckets=BATCH_BUCKETS,
)

# The columns of repository.settings_of and transaction.membership_of, by question (`i`).
_READ = """
SELECT c.i, r.owner_id, r.name, r.visibility, r.control_mode, r.ad_sync, r.auto_advance,
       r.vote_skip_ratio, r.queue_limit_per_user,
       m.name AS m_name, m.role AS m_role, m.joined_at_ms AS m_joined_at_ms,
       m.banned AS m_banned
FROM unnest(%(rooms)s::text[], %(users)s::text[]) WITH ORDINALITY AS c(room, user_id, i)
JOIN rooms_rooms r ON r.code = c.room
LEFT JOIN rooms_members m ON m.room = c.room AND m.user_id = c.user_id
"""


def _parameters(questions: Sequence[tuple[str, str]]) -> dict[str, Any]:
    return {"rooms": [room for room, _ in questions], "users": [user for _, user in questions]}


class AccessReads:
    """(room, user) questions, read in batches."""

    def __init__(self, dsn: str, timeout_s: float = READ_TIMEOUT_S) -> None:
        self._reads = BatchedReads(dsn, _READ, _parameters, BATCH_SIZE, timeout_s)

    async def read(self, room: str, user_id: str) -> Any | None:
        """The room's settings and owner with `user_id`'s membership (`m_*` columns, None
        when not a member); None when there is no such room."""
        rows = await self._reads.read((room, user_id))
        return rows[0] if rows else None

    async def aclose(self) -> None:
        await self._reads.aclose()
