"""Alembic environment. Runs on a connection handed in by ivr.storage.migrate, or, when
invoked by the alembic CLI, on an async engine built from ``sqlalchemy.url``."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

import ivr.storage.calls  # noqa: F401  (registers the calls/callbacks tables)
import ivr.storage.jobs  # noqa: F401  (registers the jobs table)
import ivr.storage.messages  # noqa: F401  (registers the messages and opt-out tables)
import ivr.storage.refunds  # noqa: F401  (registers the refunds table)
from ivr.storage.db import make_engine
from ivr.storage.models import Base

target_metadata = Base.metadata
config = context.config


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = make_engine(url)
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif (conn := config.attributes.get("connection")) is not None:
    _run(conn)
else:
    asyncio.run(_run_async(config.get_main_option("sqlalchemy.url") or ""))
