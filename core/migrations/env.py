"""Alembic environment: the URL comes from Vigil settings, never from a file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from core.schema import metadata
from core.settings import load_settings

url = context.config.attributes.get("database_url") or load_settings().database_url
engine = create_engine(url)
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
