"""Everything `vigil demo` prepares before services start: topics, schema, demo users, default rules."""

from __future__ import annotations

import json
import logging
import secrets
import time
from datetime import datetime

from sqlalchemy import Engine, func, select

from core import schema
from core.db import make_engine
from core.kafka import ensure_topics
from core.migrate import upgrade
from core.settings import Settings
from core.topics import STREAM_TOPICS

log = logging.getLogger(__name__)

DEMO_TENANT = "tenant-1"  # the generator's default tenant
DEMO_USERS = {"admin": ("admin",), "analyst": ("analyst",), "viewer": ("viewer",)}


def _credentials(settings: Settings) -> dict[str, str]:
    """Random per-checkout demo passwords, kept in .vigil/ so repeated demos show the same ones."""
    path = settings.state_dir / "demo-credentials.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    created = {user: secrets.token_urlsafe(12) for user in DEMO_USERS}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(created))
    path.chmod(0o600)
    return created


def prepare_demo(*, settings: Settings) -> dict[str, tuple[str, str]]:
    """Idempotently prepare a demo; returns role -> (user, password) to print."""
    from api import Role, create_principal
    from rules import load_pack, seed_pack

    ensure_topics(settings, STREAM_TOPICS)
    upgrade(settings.database_url)
    passwords = _credentials(settings)
    engine = make_engine(settings, pool_size=1)
    try:
        with engine.begin() as connection:
            existing = set(connection.execute(select(schema.principals.c.principal_id)).scalars())
            for user, roles in DEMO_USERS.items():
                if user in existing:
                    continue
                create_principal(
                    connection=connection,
                    principal_id=user,
                    kind="user",
                    secret=passwords[user],
                    roles=[Role(role) for role in roles],
                    tenants=[] if "admin" in roles else [DEMO_TENANT],
                    actor="demo",
                )
        seed_pack(engine=engine, drafts=load_pack())
    finally:
        engine.dispose()
    return {user: (user, passwords[user]) for user in DEMO_USERS}


def _rows_between(engine: Engine, start: datetime, end: datetime) -> int:
    query = (
        select(func.count())
        .select_from(schema.transactions)
        .where(schema.transactions.c.occurred_at >= start, schema.transactions.c.occurred_at < end)
    )
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def history_rows(*, settings: Settings, start: datetime, end: datetime) -> int:
    """Stored transactions with event time in [start, end): how far back-dated demo traffic got."""
    engine = make_engine(settings, pool_size=1)
    try:
        return _rows_between(engine, start, end)
    finally:
        engine.dispose()


def wait_until_stored(*, settings: Settings, start: datetime, end: datetime, timeout: float = 900.0) -> int:
    """Wait until ingestion stops adding rows to the window (stable over 15 s); returns the row count."""
    engine = make_engine(settings, pool_size=1)  # one pool for every poll
    try:
        deadline = time.monotonic() + timeout
        last, stable_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            rows = _rows_between(engine, start, end)
            if rows != last:
                last, stable_since = rows, time.monotonic()
            elif rows > 0 and time.monotonic() - stable_since >= 15:
                return rows
            time.sleep(3)
    finally:
        engine.dispose()
    raise TimeoutError(f"ingestion did not settle within {timeout:.0f}s ({last} rows stored)")


def has_champion(*, settings: Settings, name: str) -> bool:
    from detectors.ml import CHAMPION, ModelRegistry, RegistryError

    try:
        ModelRegistry(settings.mlflow_tracking_uri).resolve(name, CHAMPION)
    except RegistryError:
        return False
    return True
