"""Precision from labels, the dashboard summary (display time zone) and trends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert
from starlette.testclient import TestClient

from core.schema import anomalies, labels
from tests.api.conftest import TENANT_A, TokenFactory, anomaly_row, bearer

pytestmark = pytest.mark.integration


def test_precision_per_detector_and_rule_from_analyst_labels(
    client: TestClient, db: Engine, token_for: TokenFactory
) -> None:
    when = datetime.now(UTC) - timedelta(days=1)
    rows = []
    for i in range(10):
        rows.append(anomaly_row(TENANT_A, f"tx-{i}", detector_name="amount_zscore", event_time=when))
        # A second version of the same detector must not count the transaction twice.
        rows.append(
            anomaly_row(TENANT_A, f"tx-{i}", detector_name="amount_zscore", detector_version="2", event_time=when)
        )
        if i < 4:
            rows.append(
                anomaly_row(TENANT_A, f"tx-{i}", detector_name="rule:burst", detector_family="rules", event_time=when)
            )
    verdicts = {"tx-0": "fraud", "tx-1": "fraud", "tx-2": "false_positive", "tx-5": "expected", "tx-6": "fraud"}
    with db.begin() as connection:
        connection.execute(insert(anomalies), rows)
        connection.execute(
            insert(labels),
            [
                {"tenant_id": TENANT_A, "transaction_id": tx, "label": label, "source": "analyst", "author": "a"}
                for tx, label in verdicts.items()
            ]
            + [
                {
                    "tenant_id": TENANT_A,
                    "transaction_id": "tx-3",
                    "label": "fraud",
                    "source": "generator",
                    "author": "g",
                }
            ],
        )
    report = client.get("/v1/metrics/precision", headers=bearer(token_for("viewer"))).json()
    by_name = {d["detector_name"]: d for d in report["detectors"]}
    assert by_name["amount_zscore"] == {
        "detector_family": "statistical",
        "detector_name": "amount_zscore",
        "flagged": 10,
        "labelled": 5,
        "fraud": 3,
        "not_fraud": 2,
        "precision": 0.6,
    }
    assert by_name["rule:burst"]["flagged"] == 4
    assert by_name["rule:burst"]["labelled"] == 3 and by_name["rule:burst"]["precision"] == pytest.approx(2 / 3)
    generator = client.get("/v1/metrics/precision?source=generator", headers=bearer(token_for("viewer"))).json()
    assert {d["detector_name"]: d["precision"] for d in generator["detectors"]} == {
        "amount_zscore": 1.0,
        "rule:burst": 1.0,
    }
    old = client.get("/v1/metrics/precision?to=2020-01-01T00:00:00Z", headers=bearer(token_for("viewer"))).json()
    assert old["detectors"] == []


def test_summary_counts_today_in_the_display_zone(client: TestClient, db: Engine, token_for: TokenFactory) -> None:
    zone = ZoneInfo("Pacific/Kiritimati")  # UTC+14: "today" there differs from UTC for most of the day
    now = datetime.now(UTC)
    local_midnight = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    before = local_midnight - timedelta(minutes=1)
    after = local_midnight + timedelta(minutes=1)
    rows = [
        anomaly_row(TENANT_A, "tx-yesterday", event_time=before, entity_id="acc-1"),
        anomaly_row(TENANT_A, "tx-today-1", event_time=after, entity_id="acc-1", severity="warning"),
        anomaly_row(TENANT_A, "tx-today-2", event_time=min(now, after + timedelta(seconds=30)), entity_id="acc-1"),
        anomaly_row(TENANT_A, "tx-old", event_time=now - timedelta(days=8), entity_id="acc-2"),
    ]
    with db.begin() as connection:
        connection.execute(insert(anomalies), rows)
    token = token_for("viewer")
    summary = client.get("/v1/stats/summary?tz=Pacific/Kiritimati", headers=bearer(token)).json()
    assert summary["timezone"] == "Pacific/Kiritimati"
    assert summary["anomalies_today"] == 2
    assert summary["today_by_severity"] == {"info": 0, "warning": 1, "critical": 1}
    assert [a["transaction_id"] for a in summary["last_anomalies"]][:3] == ["tx-today-2", "tx-today-1", "tx-yesterday"]
    assert [(e["entity_id"], e["anomaly_count"]) for e in summary["high_risk_entities"]] == [("acc-1", 3)]
    bad_zone = client.get("/v1/stats/summary?tz=Mars/Olympus", headers=bearer(token))
    assert bad_zone.status_code == 422 and bad_zone.json()["error"]["details"][0]["loc"] == ["query", "tz"]


def test_trends_bucket_by_hour_and_local_day(client: TestClient, db: Engine, token_for: TokenFactory) -> None:
    start = datetime(2026, 11, 10, 22, 30, tzinfo=UTC)
    rows = [
        anomaly_row(TENANT_A, f"tx-{i}", event_time=start + timedelta(minutes=20 * i), severity=sev)
        for i, sev in enumerate(["info", "critical", "critical", "warning", "info"])
    ]
    with db.begin() as connection:
        connection.execute(insert(anomalies), rows)
    token = token_for("viewer")
    hourly = client.get(
        "/v1/stats/trends?from=2026-11-10T00:00:00Z&to=2026-11-12T00:00:00Z&bucket=hour&group_by=severity&tz=UTC",
        headers=bearer(token),
    ).json()
    points = {(p["bucket_start"][:16], p["group"]): p["count"] for p in hourly["points"]}
    assert points == {
        ("2026-11-10T22:00", "info"): 1,
        ("2026-11-10T22:00", "critical"): 1,
        ("2026-11-10T23:00", "critical"): 1,
        ("2026-11-10T23:00", "warning"): 1,
        ("2026-11-10T23:00", "info"): 1,
    }
    # All five are on 10 November in UTC; in Berlin (UTC+1) the last three fall on 11 November.
    daily = client.get(
        "/v1/stats/trends?from=2026-11-01T00:00:00Z&to=2026-11-20T00:00:00Z&bucket=day&group_by=detector"
        "&tz=Europe/Berlin",
        headers=bearer(token),
    ).json()
    assert [(p["bucket_start"], p["group"], p["count"]) for p in daily["points"]] == [
        ("2026-11-09T23:00:00Z", "statistical:amount_zscore", 2),
        ("2026-11-10T23:00:00Z", "statistical:amount_zscore", 3),
    ]
    # Windows longer than 1000 buckets are cut to the most recent 1000.
    wide = client.get(
        "/v1/stats/trends?from=2000-01-01T00:00:00Z&to=2026-11-12T00:00:00Z&bucket=hour", headers=bearer(token)
    ).json()
    assert wide["since"].startswith("2026-10-01T08:00")  # 1000 hours before `to`
