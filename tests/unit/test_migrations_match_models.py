"""The migrations build exactly the schema the models declare: a column or an index added to
a model without a migration (or the reverse) shows up here, not in production."""

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import services.auth.models
import services.chat.models
import services.common.sequencer
import services.queue.models
import services.rooms.models  # noqa: F401 - every service's tables on Base.metadata
from services.common.db import Base
from tests.support.system import migrate


def test_head_matches_the_models(tmp_path: Path) -> None:
    migrate(f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}")
    engine = create_engine(f"sqlite:///{tmp_path / 'schema.db'}")
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
