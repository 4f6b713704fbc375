"""What the janitor asks of the queue: retention of played entries and of the command log,
and the rows of rooms that rooms closed."""

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.idempotency import CommandLog
from services.common.upkeep import RetentionUpkeep

from . import repository as repo


class Upkeep(RetentionUpkeep):
    def __init__(self, engine: AsyncEngine, commands: CommandLog) -> None:
        super().__init__(
            engine,
            commands,
            service="queue",
            kind="entries",
            purge_old=repo.purge_finished,
            purge_orphans=repo.purge_orphans,
        )
