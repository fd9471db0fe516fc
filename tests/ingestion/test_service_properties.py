"""Arbitrary input through the real running service: every record is stored or dead-lettered, nothing crashes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from core.settings import Settings
from core.topics import TX_DLQ, TX_VALID
from tests.ingestion.helpers import committed_lag, produce_raw, row_counts, running_ingest, topic_messages
from tests.ingestion.strategies import JSON_VALUES, near_misses, valid_payloads
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def _now(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "occurred_at": datetime.now(UTC).isoformat()}


RECORDS = st.one_of(
    valid_payloads().map(_now).map(lambda p: json.dumps(p).encode()),
    near_misses().map(_now).map(lambda p: json.dumps(p).encode()),
    near_misses().map(lambda p: json.dumps(p).encode()),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)


def test_every_record_is_stored_or_dead_lettered_and_the_service_survives(topics: Settings, db: Engine) -> None:
    settings = topics.model_copy(update={"batch_size": 64})
    produced = 0

    @given(st.lists(RECORDS, min_size=1, max_size=60))
    @hypothesis_settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    def check(records: list[bytes]) -> None:
        nonlocal produced
        produced += produce_raw(settings, records)
        wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="the service to take every record")
        rows, distinct = row_counts(db)
        assert rows == distinct
        dead = len(topic_messages(settings, TX_DLQ))
        assert rows + dead == produced
        assert len(topic_messages(settings, TX_VALID)) == rows

    with running_ingest(settings):
        check()
    # Both paths were exercised, not just one.
    assert row_counts(db)[0] > 0
    assert topic_messages(settings, TX_DLQ)
