"""Helpers shared by benchmark scripts: a scratch database and a printed result line."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from core.migrate import upgrade
from core.settings import Settings, load_settings


@contextmanager
def scratch_database(settings: Settings | None = None) -> Iterator[Settings]:
    """A freshly migrated database for one benchmark run, dropped afterwards."""
    settings = settings or load_settings()
    admin_url = make_url(settings.database_url)
    name = f"vigil_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield settings.model_copy(update={"database_url": url, "kafka_topic_prefix": f"bench{uuid.uuid4().hex[:8]}."})
    finally:
        _drop_database(admin, name)
        admin.dispose()


def _drop_database(admin: Engine, name: str, *, attempts: int = 40) -> None:
    """DROP ... WITH (FORCE), retried: an autovacuum worker on the fresh database cannot be forced out."""
    for attempt in range(attempts):
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)


def report(name: str, value: float, unit: str, target: str = "") -> None:
    suffix = f"  (target {target})" if target else ""
    print(f"{name:<48} {value:>14,.1f} {unit}{suffix}")
