"""Aggregate checks against real rows in PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from core import schema
from core.settings import Settings
from detectors.aggregate import check_hour

pytestmark = pytest.mark.integration

HOUR = datetime(2026, 11, 18, 14, tzinfo=UTC)  # a Wednesday afternoon


def _row(n: int, merchant: str, when: datetime, amount: str = "20.00", account: str | None = None) -> dict[str, Any]:
    return {
        "transaction_id": f"{merchant}-{n}",
        "occurred_at": when,
        "tenant_id": "acme",
        "account_id": account or f"acc-{n % 40}",
        "merchant_id": merchant,
        "merchant_category": "5411",
        "amount": amount,
        "currency": "EUR",
        "channel": "ecommerce",
        "country": "DE",
    }


def _history(db: Engine) -> None:
    rows: list[dict[str, Any]] = []
    start = HOUR - timedelta(days=29)
    hours = int((HOUR - start).total_seconds() // 3600)
    for h in range(hours):
        when = start + timedelta(hours=h)
        for k in range(3):  # steady: 3 payments every hour
            rows.append(_row(len(rows), "m-steady", when + timedelta(minutes=10 * k)))
            rows.append(_row(len(rows), "m-spike", when + timedelta(minutes=10 * k)))
        if 9 <= when.hour < 17:  # a daytime shop
            for k in range(5):
                rows.append(_row(len(rows), "m-daytime", when + timedelta(minutes=5 * k)))
    for k in range(3):
        rows.append(_row(len(rows), "m-steady", HOUR + timedelta(minutes=10 * k)))
    for k in range(60):  # a card-testing wave: 60 small payments in the checked hour
        rows.append(_row(len(rows), "m-spike", HOUR + timedelta(seconds=50 * k), amount="1.00"))
    # The daytime shop is busy at night today and silent during its usual hours.
    for h in range(24):
        when = HOUR - timedelta(hours=23 - h)
        if not 9 <= when.hour < 17:
            for k in range(5):
                rows.append(_row(len(rows), "m-daytime", when + timedelta(minutes=5 * k)))
    with db.begin() as connection:
        for start_index in range(0, len(rows), 2000):
            connection.execute(insert(schema.transactions), rows[start_index : start_index + 2000])


def test_volume_spike_and_shape_change_are_found_and_steady_traffic_is_not(db: Engine, settings: Settings) -> None:
    _history(db)
    with db.connect() as connection:
        anomalies = check_hour(connection, settings=settings, hour=HOUR)
    found = {(a.entity_id, a.detector_name): a for a in anomalies}
    assert ("m-spike", "merchant_hourly_volume") in found
    spike = found[("m-spike", "merchant_hourly_volume")]
    assert spike.severity.value == "critical"
    assert spike.features["hourly_count"] == 60.0
    assert "60 payments in the hour" in spike.reasons[0].text
    assert ("m-daytime", "merchant_daily_shape") in found
    assert not any(entity == "m-steady" for entity, _ in found)
    # Idempotent per window: the same hour gives the same anomaly ids.
    with db.connect() as connection:
        again = check_hour(connection, settings=settings, hour=HOUR)
    assert {a.anomaly_id for a in again} == {a.anomaly_id for a in anomalies}
