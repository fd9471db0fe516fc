"""Shared fixtures: the real local stack, an isolated database per session, unique topics per test.

Integration tests talk to the Kafka, PostgreSQL and MLflow that `vigil stack up`
runs; the session starts the stack itself if it is not up. Each pytest session
gets its own freshly migrated database (so parallel sessions never collide) and
each test gets empty tables and its own topic prefix, whose topics are deleted when
the session ends (a developer's long-lived broker would otherwise collect hundreds of
topics per run).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from core.db import make_engine, temporary_database
from core.kafka import ensure_topics
from core.schema import metadata
from core.settings import Settings, load_settings
from core.topics import STREAM_TOPICS

_TOPIC_PREFIXES: list[str] = []  # handed out by `settings` in this session


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Delete the topics of this session's prefixes (never another session's: they may still run)."""
    if not _TOPIC_PREFIXES:
        return
    from confluent_kafka.admin import AdminClient

    from core.kafka import client_config

    admin = AdminClient(client_config(load_settings(environment="test")))
    prefixes = tuple(_TOPIC_PREFIXES)
    try:
        names = [name for name in admin.list_topics(timeout=10).topics if name.startswith(prefixes)]
        if names:
            for future in admin.delete_topics(names, operation_timeout=60).values():
                future.exception()  # wait for it; a topic already gone is fine
    except Exception as exc:  # cleanup must never fail a finished run
        session.config.get_terminal_writer().line(f"could not delete this session's test topics: {exc}")


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return load_settings(environment="test", log_format="text")


@pytest.fixture(scope="session")
def stack(base_settings: Settings) -> Settings:
    """Make sure the real stack is running (starts it when it is not)."""
    from vigil.stack import Stack

    status = Stack(base_settings).status()
    if not status.healthy:
        status = Stack(base_settings).up()
    assert status.healthy, f"local stack is not healthy: {status}"
    return base_settings


@pytest.fixture(scope="session")
def database_url(stack: Settings) -> Iterator[str]:
    """A fresh database for this pytest session, migrated to head, dropped afterwards."""
    with temporary_database(stack.database_url, prefix="vigil_test") as url:
        yield url


@pytest.fixture(scope="session")
def session_engine(database_url: str, stack: Settings) -> Iterator[Engine]:
    engine = make_engine(stack.model_copy(update={"database_url": database_url}))
    yield engine
    engine.dispose()


@pytest.fixture
def db(session_engine: Engine) -> Iterator[Engine]:
    """The session database with every table emptied after the test."""
    yield session_engine
    with session_engine.begin() as connection:
        existing = set(
            connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars()
        )
        names = ", ".join(t.name for t in metadata.sorted_tables if t.name in existing)
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
def settings(stack: Settings, database_url: str) -> Settings:
    """Settings for one test: the session database and a topic prefix of its own."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    _TOPIC_PREFIXES.append(prefix)
    return stack.model_copy(update={"database_url": database_url, "kafka_topic_prefix": prefix, "kafka_partitions": 3})


@pytest.fixture
def topics(settings: Settings) -> Settings:
    """Create this test's stream topics (prefixed) and return its settings."""
    ensure_topics(settings, STREAM_TOPICS)
    return settings
