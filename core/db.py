"""Database engine and session factory (PostgreSQL / TimescaleDB via psycopg 3)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings


def make_engine(settings: Settings, *, pool_size: int | None = None) -> Engine:
    """Engine with pre-ping, so connections dropped by a DB restart are replaced, not used."""
    return create_engine(
        settings.database_url,
        pool_pre_ping=True,
        pool_size=pool_size or settings.database_pool_size,
        max_overflow=pool_size or settings.database_pool_size,
        pool_recycle=1800,
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on error."""
    with Session(engine) as session, session.begin():
        yield session


def database_ready(engine: Engine) -> bool:
    """True when the database answers a trivial query (readiness probes)."""
    with engine.connect() as connection:
        return connection.execute(text("SELECT 1")).scalar() == 1


def timescaledb_available(engine: Engine) -> bool:
    """True when the `timescaledb` extension is installed on the server."""
    with engine.connect() as connection:
        query = text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
        return connection.execute(query).first() is not None
