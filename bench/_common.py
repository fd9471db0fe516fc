"""Helpers shared by benchmark scripts: a scratch database, one-core pinning and a printed result line."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings


@contextmanager
def scratch_database(settings: Settings | None = None) -> Iterator[Settings]:
    """A freshly migrated database for one benchmark run, dropped afterwards."""
    # Imported here: bench/features_quix.py runs in Quix Streams' own virtualenv, without Vigil's packages.
    from core.db import temporary_database
    from core.settings import load_settings

    settings = settings or load_settings()
    with temporary_database(settings.database_url, prefix="vigil_bench") as url:
        yield settings.model_copy(update={"database_url": url, "kafka_topic_prefix": f"bench{uuid.uuid4().hex[:8]}."})


def pin_to_one_core() -> None:
    """Run this process (every thread, librdkafka's included) on one core: "per core" figures mean that."""
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def report(name: str, value: float, unit: str, target: str = "") -> None:
    suffix = f"  (target {target})" if target else ""
    print(f"{name:<48} {value:>14,.1f} {unit}{suffix}")
