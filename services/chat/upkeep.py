"""What the janitor asks of chat: retention of messages and of the command log, and the rows
of rooms that rooms closed."""

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.idempotency import CommandLog
from services.common.upkeep import RetentionUpkeep

from . import repository as repo


class Upkeep(RetentionUpkeep):
    def __init__(self, engine: AsyncEngine, commands: CommandLog) -> None:
        super().__init__(
            engine,
            commands,
            service="chat",
            kind="messages",
            purge_old=repo.purge_messages,
            purge_orphans=repo.purge_orphans,
        )
