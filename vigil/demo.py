"""Everything `vigil demo` prepares before services start: topics, schema, demo principals, rules."""

from __future__ import annotations

import logging

from core.kafka import ensure_topics
from core.migrate import upgrade
from core.settings import Settings
from core.topics import STREAM_TOPICS

log = logging.getLogger(__name__)

DEMO_TENANT = "demo"


def prepare_demo(*, settings: Settings) -> dict[str, tuple[str, str]]:
    """Idempotently prepare a demo; returns role -> (user, password) to print."""
    ensure_topics(settings, STREAM_TOPICS)
    upgrade(settings.database_url)
    return {}
