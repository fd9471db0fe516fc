"""`vigil dlq inspect|replay` on the real stack: reasons, filters, JSON, replays without duplicates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from core.settings import Settings
from core.topics import TX_VALID
from ingestion import TimeWindow, inspect_dead_letters, replay_dead_letters
from tests.ingestion.helpers import (
    committed_lag,
    encode,
    produce_raw,
    row_counts,
    running_ingest,
    topic_messages,
    transaction,
)
from tests.ingestion.test_service import MALFORMED
from tests.waiting import wait_for
from vigil.cli import cli

pytestmark = pytest.mark.integration

NARROW = TimeWindow(max_future_seconds=60, max_age_seconds=3600)
WIDE = TimeWindow(max_future_seconds=60, max_age_seconds=30 * 86_400)


def cli_env(settings: Settings) -> dict[str, str]:
    return {
        "VIGIL_DATABASE_URL": settings.database_url,
        "VIGIL_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "VIGIL_ENVIRONMENT": "test",
    }


def ingest_until_idle(settings: Settings, window: TimeWindow) -> None:
    with running_ingest(settings, window=window):
        wait_for(lambda: committed_lag(settings) == 0, timeout=60, what="ingest to catch up")


def test_inspect_lists_reasons_and_filters(topics: Settings, db: Engine) -> None:
    settings = topics.model_copy(update={"batch_size": 100})
    produce_raw(settings, [encode(transaction(n)) for n in range(5)])
    # One key, one partition: the dead letters keep this order.
    malformed = [MALFORMED["unknown_currency"], MALFORMED["invalid_json"], MALFORMED["unknown_country"]]
    produce_raw(settings, malformed, key=b"one-partition")
    ingest_until_idle(settings, WIDE)

    records = inspect_dead_letters(settings)
    assert [r.reason for r in records] == ["unknown_currency", "invalid_json", "unknown_country"]
    assert records[0].transaction_id == "tx-900009"
    assert records[1].transaction_id is None  # not JSON: shown, not guessed
    assert records[0].value == MALFORMED["unknown_currency"]
    assert records[0].service == "ingest"
    assert records[0].source_topic == settings.topic("tx.raw")

    runner = CliRunner()
    result = runner.invoke(cli, ["dlq", "inspect", "--reason", "invalid_json", "--json"], env=cli_env(settings))
    assert result.exit_code == 0, result.output
    (only,) = json.loads(result.output)
    assert only["reason"] == "invalid_json"
    assert only["value"] == MALFORMED["invalid_json"].decode()
    assert only["ref"] == records[1].ref

    result = runner.invoke(cli, ["dlq", "inspect", "--limit", "2"], env=cli_env(settings))
    assert result.exit_code == 0, result.output
    assert "2 dead letters (unknown_currency: 1, invalid_json: 1)" in result.output

    result = runner.invoke(cli, ["dlq", "inspect", "--ref", "nope/0/1"], env=cli_env(settings))
    assert result.exit_code == 2 and "no such dead letter" in result.output


def test_replay_after_a_policy_fix_ingests_each_dead_letter_once(topics: Settings, db: Engine) -> None:
    settings = topics.model_copy(update={"batch_size": 100})
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    late = [transaction(n, occurred_at=two_days_ago) for n in range(10)]
    produce_raw(settings, [encode(p) for p in late] + [MALFORMED["unknown_currency"]])
    ingest_until_idle(settings, NARROW)
    assert row_counts(db) == (0, 0)
    assert len(inspect_dead_letters(settings, reasons=["occurred_at_too_old"])) == 10

    # Two operators replay the same selection before ingestion runs again.
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(
            cli, ["dlq", "replay", "--reason", "occurred_at_too_old", "--json"], env=cli_env(settings)
        )
        assert result.exit_code == 0, result.output
        assert len(json.loads(result.output)["resubmitted"]) == 10
    ingest_until_idle(settings, WIDE)
    assert row_counts(db) == (10, 10)
    assert len(topic_messages(settings, TX_VALID)) == 10
    # Nothing new was dead-lettered: the second re-submission was recognised, not called a duplicate.
    assert len(inspect_dead_letters(settings)) == 11

    # A third replay finds them stored and sends nothing.
    records = inspect_dead_letters(settings, reasons=["occurred_at_too_old"])
    report = replay_dead_letters(settings, records, engine=db)
    assert report.resubmitted == [] and len(report.already_ingested) == 10


def test_replay_needs_a_selection_and_supports_dry_runs(topics: Settings, db: Engine) -> None:
    settings = topics.model_copy(update={"batch_size": 100})
    produce_raw(settings, [MALFORMED["unknown_country"], MALFORMED["unknown_country"]])
    ingest_until_idle(settings, WIDE)
    runner = CliRunner()
    result = runner.invoke(cli, ["dlq", "replay"], env=cli_env(settings))
    assert result.exit_code == 2 and "choose what to replay" in result.output
    result = runner.invoke(cli, ["dlq", "replay", "--all", "--dry-run"], env=cli_env(settings))
    assert result.exit_code == 0, result.output
    # Both records carry the same id: only the first would be re-submitted.
    assert "would re-submit 1" in result.output
    assert "same id as an earlier selected record: 1" in result.output
    assert committed_lag(settings) == 0  # a dry run sends nothing to tx.raw


def test_replay_sees_only_the_dead_letters_own_tenant_as_already_ingested(topics: Settings, db: Engine) -> None:
    """Ids are unique per tenant (ADR 0013): acme's stored tx-000001 does not make globex's a duplicate."""
    settings = topics.model_copy(update={"batch_size": 100})
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    produce_raw(settings, [encode(transaction(1, occurred_at=two_days_ago))])
    produce_raw(settings, [encode(transaction(1, occurred_at=two_days_ago, tenant_id="globex"))])
    ingest_until_idle(settings, NARROW)
    assert len(inspect_dead_letters(settings, reasons=["occurred_at_too_old"])) == 2
    produce_raw(settings, [encode(transaction(1))])  # acme's tx-000001 arrives again, in time, and is stored
    ingest_until_idle(settings, NARROW)
    assert row_counts(db) == (1, 1)

    records = sorted(inspect_dead_letters(settings, reasons=["occurred_at_too_old"]), key=lambda r: r.tenant_id or "")
    assert [(r.tenant_id, r.transaction_id) for r in records] == [("acme", "tx-000001"), ("globex", "tx-000001")]
    report = replay_dead_letters(settings, records, engine=db, dry_run=True)
    assert report.already_ingested == [records[0].ref]
    assert report.resubmitted == [records[1].ref] and report.duplicate_in_selection == []
