"""`vigil silences add|list|expire` (audited) and system alerts, on the real PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from alerting import AlertingService
from alerting.config import build_config
from core.schema import audit_log, silences
from core.settings import Settings
from tests.alerting.conftest import FakeClock, make_anomaly
from tests.alerting.test_store import RecordingChannel
from vigil.cli import cli

pytestmark = pytest.mark.integration


def _vigil(settings: Settings, *args: str) -> Any:
    env = {"VIGIL_DATABASE_URL": settings.database_url, "VIGIL_LOG_FORMAT": "text"}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_silences_cli_add_list_expire_is_audited(settings: Settings, db: Engine) -> None:
    added = _vigil(
        settings,
        *("silences", "add", "entity_id=m-1", 'severity=~"warning|critical"'),
        *("--comment", "merchant load test", "--author", "ana", "--duration", "30m", "--tenant", "acme"),
    )
    assert added.exit_code == 0, added.output
    silence_id = added.output.strip()

    listed = _vigil(settings, "silences", "list", "--json")
    rows = json.loads(listed.output)
    assert [r["silence_id"] for r in rows] == [silence_id]
    assert rows[0]["matchers"] == [
        {"label": "entity_id", "op": "=", "value": "m-1"},
        {"label": "severity", "op": "=~", "value": "warning|critical"},
    ]
    assert rows[0]["created_by"] == "ana" and rows[0]["tenant_id"] == "acme"

    expired = _vigil(settings, "silences", "expire", silence_id, "--author", "bo")
    assert expired.exit_code == 0 and silence_id in expired.output
    assert "no silences" in _vigil(settings, "silences", "list").output
    again = _vigil(settings, "silences", "expire", silence_id)
    assert again.exit_code == 2 and "already ended" in again.output

    with db.connect() as connection:
        audit = [(r.actor, r.action, r.object_id) for r in connection.execute(select(audit_log).order_by("audit_id"))]
        stored = connection.execute(select(silences)).one()
    assert audit == [("ana", "silence.create", silence_id), ("bo", "silence.expire", silence_id)]
    assert stored.expired_by == "bo"


def test_silence_without_matchers_or_comment_is_refused(settings: Settings) -> None:
    bad = _vigil(settings, "silences", "add", "nonsense", "--comment", "x")
    assert bad.exit_code == 2 and "cannot parse matcher" in bad.output
    missing = _vigil(settings, "silences", "add", "entity_id=m-1")
    assert missing.exit_code == 2 and "--comment" in missing.output


def _system_service(db: Engine, clock: FakeClock, dlq: list[int]) -> tuple[AlertingService, RecordingChannel]:
    config = build_config(
        {
            "routes": [
                {"id": "system", "matchers": ['kind="system"'], "receiver": "ops", "group_by": ["alertname"]},
                {"id": "rest", "receiver": None},
            ],
            "receivers": [{"name": "ops", "type": "webhook", "url": "http://127.0.0.1:9/x", "secret_env": "VIGIL_T"}],
            "system": {"anomalies_per_hour_ceiling": 50, "dlq_growth_threshold": 100, "dlq_window": "15m"},
            "defaults": {"group_wait": "10s"},
        },
        environ={"VIGIL_T": "k"},
    )
    ops = RecordingChannel("ops")
    sizes = iter(dlq)
    service = AlertingService(
        engine=db,
        config=config,
        channels={"ops": ops},
        public_url="https://vigil.example.com",
        clock=clock,
        dlq_size=lambda: next(sizes),
    )
    return service, ops


def test_anomaly_storm_and_dlq_growth_raise_system_alerts(db: Engine) -> None:
    clock = FakeClock()
    service, ops = _system_service(db, clock, dlq=[1000, 1050, 1201, 1201])
    service.ingest_anomalies([make_anomaly(i) for i in range(50)])
    assert service.check_system() is not None  # 50 is not above the ceiling; DLQ baseline taken
    clock.advance(60)
    service.check_system()  # DLQ +50: below threshold
    clock.advance(60)
    service.ingest_anomalies([make_anomaly(i) for i in range(50, 60)])
    result = service.check_system()  # 60 anomalies this hour; DLQ +201 within 15 min
    assert result is not None and result.new == 2
    clock.advance(30)
    assert service.check_system() is None  # not due before check_interval
    clock.advance(30)
    repeat = service.check_system()
    assert repeat is not None and repeat.new == 0  # same hour, same window: deduplicated
    clock.advance(10)
    service.flush()
    service.dispatch()
    titles = sorted(m.title for m in ops.sent)
    assert titles == [
        "[CRITICAL] Anomaly rate above ceiling: 60 in the last hour (ceiling 50)",
        "[CRITICAL] Dead-letter topic grew by 201 in 15 min",
    ]
