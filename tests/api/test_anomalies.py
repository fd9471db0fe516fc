"""`GET /v1/anomalies`: keyset pagination (stable, complete), every filter, detail, errors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert
from starlette.testclient import TestClient

from core.schema import anomalies, anomaly_features
from tests.api.conftest import BASE_TIME, TENANT_A, TENANT_B, TokenFactory, anomaly_row, bearer

pytestmark = pytest.mark.integration


def _insert(db: Engine, rows: list[dict[str, Any]]) -> None:
    """Store anomalies as the writer does: a row's `features`, if any, go to its transaction's snapshot."""
    snapshots = {
        (r["transaction_id"], r["event_time"]): {
            "tenant_id": r["tenant_id"],
            "transaction_id": r["transaction_id"],
            "event_time": r["event_time"],
            "features": r["features"],
        }
        for r in rows
        if r.get("features")
    }
    with db.begin() as connection:
        connection.execute(insert(anomalies), [{k: v for k, v in r.items() if k != "features"} for r in rows])
        if snapshots:
            connection.execute(insert(anomaly_features), list(snapshots.values()))


def _walk(
    client: TestClient, token: str, query: str = "", limit: int = 50, cursor: str | None = None
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for _ in range(1000):
        url = f"/v1/anomalies?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(url, headers=bearer(token))
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["data"]) <= limit
        items.extend(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


def _many(tenant: str, count: int, *, start: int = 0) -> list[dict[str, Any]]:
    rows = []
    for i in range(start, start + count):
        # Groups of three share an event time, so the anomaly_id tie-breaker is exercised.
        rows.append(
            anomaly_row(
                tenant,
                f"tx-{tenant}-{i}",
                event_time=BASE_TIME - timedelta(minutes=i // 3),
                score=float((i * 37) % 101),
                severity=("info", "warning", "critical")[i % 3],
            )
        )
    return rows


def _key(item: dict[str, Any]) -> tuple[str, str]:
    return (item["event_time"], item["anomaly_id"])


def test_pages_are_complete_stable_and_ordered(client: TestClient, db: Engine, token_for: TokenFactory) -> None:
    _insert(db, _many(TENANT_A, 237) + _many(TENANT_B, 61))
    analyst = token_for("analyst", (TENANT_A,))

    first = client.get("/v1/anomalies?limit=50", headers=bearer(analyst)).json()
    # Anomalies arriving between pages (newer than everything) must not shift or repeat later pages.
    _insert(db, [{**row, "event_time": BASE_TIME + timedelta(hours=1)} for row in _many(TENANT_A, 5, start=10_000)])
    rest = _walk(client, analyst, limit=50, cursor=first["next_cursor"])
    original = [item["anomaly_id"] for item in first["data"] + rest]
    assert len(original) == len(set(original)) == 237
    assert all(item["tenant_id"] == TENANT_A for item in first["data"] + rest)
    ids = [item["anomaly_id"] for item in _walk(client, analyst)]
    assert len(ids) == len(set(ids)) == 242 and set(original) < set(ids)
    descending = _walk(client, analyst, limit=7)
    assert [_key(i) for i in descending] == sorted((_key(i) for i in descending), reverse=True)

    ascending = _walk(client, analyst, "&sort=event_time", limit=33)
    assert [_key(i) for i in ascending] == sorted(_key(i) for i in ascending)
    assert {i["anomaly_id"] for i in ascending} == set(ids)

    by_score = _walk(client, analyst, "&sort=-score", limit=40)
    scores = [(i["score"], i["event_time"], i["anomaly_id"]) for i in by_score]
    assert scores == sorted(scores, reverse=True) and len(scores) == 242


def test_multi_tenant_and_admin_tokens_merge_tenants_in_order(
    client: TestClient, db: Engine, token_for: TokenFactory
) -> None:
    _insert(db, _many(TENANT_A, 40) + _many(TENANT_B, 40, start=1) + _many("tenant-c", 10))
    both = _walk(client, token_for("viewer", (TENANT_A, TENANT_B)), limit=9)
    assert len(both) == 80 and {i["tenant_id"] for i in both} == {TENANT_A, TENANT_B}
    assert [_key(i) for i in both] == sorted((_key(i) for i in both), reverse=True)
    admin = _walk(client, token_for("admin", ()), limit=25)
    assert len(admin) == 90
    assert [_key(i) for i in admin] == sorted((_key(i) for i in admin), reverse=True)
    only_b = _walk(client, token_for("admin", ()), f"&tenant_id={TENANT_B}")
    assert len(only_b) == 40 and {i["tenant_id"] for i in only_b} == {TENANT_B}


def test_every_filter_narrows_exactly(client: TestClient, db: Engine, token_for: TokenFactory) -> None:
    rows = [
        anomaly_row(TENANT_A, "tx-1", detector_name="amount_zscore", score=95.0, severity="critical"),
        anomaly_row(
            TENANT_A,
            "tx-2",
            detector_name="rule:card-testing",
            detector_family="rules",
            score=100.0,
            severity="warning",
            status="acknowledged",
            entity_type="card",
            entity_id="card-9",
            event_time=BASE_TIME - timedelta(days=2),
            reasons=[{"feature": "count_10m", "text": "7 payments of 1% under 2.00 in 10 minutes"}],
        ),
        anomaly_row(
            TENANT_A,
            "tx-3",
            detector_name="isolation_forest",
            detector_family="ml",
            score=55.5,
            severity="info",
            event_time=BASE_TIME - timedelta(days=5),
        ),
    ]
    _insert(db, rows)
    token = token_for("viewer")

    def ids(query: str) -> set[str]:
        response = client.get(f"/v1/anomalies?{query}", headers=bearer(token))
        assert response.status_code == 200, response.text
        return {item["transaction_id"] for item in response.json()["data"]}

    assert ids("") == {"tx-1", "tx-2", "tx-3"}
    assert ids("severity=critical") == {"tx-1"}
    assert ids("severity=critical&severity=info") == {"tx-1", "tx-3"}
    assert ids("status=acknowledged") == {"tx-2"}
    assert ids("detector_family=ml") == {"tx-3"}
    assert ids("detector_name=rule:card-testing") == {"tx-2"}
    assert ids("entity_type=card&entity_id=card-9") == {"tx-2"}
    assert ids("transaction_id=tx-3") == {"tx-3"}
    assert ids("min_score=56&max_score=99") == {"tx-1"}
    assert ids("q=CARD-TESTING") == {"tx-2"}
    assert ids("q=1%25 under") == {"tx-2"}  # the percent sign is literal, not a wildcard
    assert ids("q=%25") == {"tx-2"}
    assert ids("q=nothing-like-this") == set()
    since = (BASE_TIME - timedelta(days=3)).isoformat().replace("+00:00", "Z")
    until = (BASE_TIME - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert ids(f"from={since}&to={until}") == {"tx-2"}
    assert ids(f"from={until}&to={since}") == set()  # an inverted window is empty, not an error


def test_detail_has_reasons_and_feature_snapshot(client: TestClient, db: Engine, token_for: TokenFactory) -> None:
    row = anomaly_row(TENANT_A, "tx-9", features={"amount": 999.0, "account_count_1h": 3.0})
    _insert(db, [row])
    response = client.get(f"/v1/anomalies/{row['anomaly_id']}", headers=bearer(token_for("viewer")))
    assert response.status_code == 200
    body = response.json()
    assert body["features"] == {"amount": 999.0, "account_count_1h": 3.0}
    assert body["reasons"][0]["text"] == "secret-tenant-a amount"
    assert body["amount"] == "999.00"  # stored with four decimals, shown with the currency's two
    missing = client.get("/v1/anomalies/00000000-0000-0000-0000-000000000000", headers=bearer(token_for("viewer")))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_detail_without_a_stored_snapshot_has_empty_features(
    client: TestClient, db: Engine, token_for: TokenFactory
) -> None:
    row = anomaly_row(TENANT_A, "tx-bare", features={})
    _insert(db, [row])
    response = client.get(f"/v1/anomalies/{row['anomaly_id']}", headers=bearer(token_for("viewer")))
    assert response.status_code == 200
    assert response.json()["features"] == {}


def test_bad_cursors_and_limits_are_client_errors(client: TestClient, db: Engine, token_for: TokenFactory) -> None:
    _insert(db, _many(TENANT_A, 5))
    token = token_for("viewer")
    page = client.get("/v1/anomalies?limit=2", headers=bearer(token)).json()
    # A cursor belongs to its sort order.
    wrong_sort = client.get(f"/v1/anomalies?sort=-score&cursor={page['next_cursor']}", headers=bearer(token))
    assert wrong_sort.status_code == 400 and wrong_sort.json()["error"]["code"] == "invalid_cursor"
    for cursor in ("garbage", "W10", "eyJhIjoxfQ"):
        response = client.get(f"/v1/anomalies?cursor={cursor}", headers=bearer(token))
        assert response.status_code == 400, cursor
    over = client.get("/v1/anomalies?limit=501", headers=bearer(token))
    assert over.status_code == 422
    assert over.json()["error"]["details"][0]["loc"] == ["query", "limit"]
    bad_enum = client.get("/v1/anomalies?severity=apocalyptic", headers=bearer(token))
    assert bad_enum.status_code == 422
