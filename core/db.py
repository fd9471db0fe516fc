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


@contextmanager
def temporary_database(
    database_url: str, *, prefix: str, migrate: bool = True, drop_attempts: int = 40
) -> Iterator[str]:
    """A database of its own beside `database_url`'s (tests, benchmarks), migrated to head unless told
    otherwise, dropped afterwards; yields its URL.

    The drop is retried every 0.5 s: an autovacuum worker busy on the fresh database cannot be
    forced out by `WITH (FORCE)` without pg_signal_backend.
    """
    import os
    import time
    import uuid

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from core.migrate import upgrade

    admin_url = make_url(database_url)
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = admin_url.set(database=name).render_as_string(hide_password=False)
        if migrate:
            upgrade(url)
        yield url
    finally:
        for attempt in range(drop_attempts):
            try:
                with admin.connect() as connection:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except DBAPIError:
                if attempt == drop_attempts - 1:
                    raise
                time.sleep(0.5)
        admin.dispose()
