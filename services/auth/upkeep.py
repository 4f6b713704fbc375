"""What the janitor asks of auth: stale guest accounts. Idempotent; bounded per call.

A guest is nobody but their token (no password, no e-mail), and tokens are never renewed,
so a guest whose token has expired can never come back: deleting them loses nothing. The
cutoff is therefore never later than one token lifetime ago, whatever the janitor asks.
"""

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.contracts.envelope import RetentionRequest, RowsDeleted
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.jsonutil import now_ms

from . import repository as repo


class Upkeep:
    def __init__(self, engine: AsyncEngine, token_lifetime_s: int) -> None:
        self.engine = engine
        self.token_lifetime_ms = token_lifetime_s * 1000

    async def retention(self, request: RetentionRequest) -> RowsDeleted:
        if request.kind != "guests":
            raise ServiceError(ErrorCode.BAD_REQUEST, f"auth keeps no {request.kind}")
        cutoff = min(request.before_ms, now_ms() - self.token_lifetime_ms)
        async with self.engine.begin() as conn:
            return RowsDeleted(deleted=await repo.purge_guests(conn, cutoff, request.limit))
