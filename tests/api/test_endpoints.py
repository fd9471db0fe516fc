"""Operations, limits, the dashboard hook, transactions and timelines, silences and alerts, scoring."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select
from starlette.testclient import TestClient

from api import ApiPorts, DetectorVerdict, ScoreOutcome, create_app
from core.contracts import Reason, Transaction
from core.schema import anomalies, anomaly_features, audit_log, cases, notifications, transactions
from core.settings import Settings
from tests.api.conftest import (
    BASE_TIME,
    TENANT_A,
    TENANT_B,
    Seeded,
    TokenFactory,
    anomaly_row,
    bearer,
    case_row,
    transaction_row,
)

pytestmark = pytest.mark.integration


def test_health_readiness_and_metrics(client: TestClient, token_for: TokenFactory) -> None:
    assert client.get("/healthz").json() == {"live": True}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"ready": True, "checks": {"database": True, "kafka": True}}
    token = token_for("viewer")
    client.get("/v1/anomalies", headers=bearer(token))
    client.get("/v1/anomalies/7d2c3f9e-0000-4000-8000-00000000abcd", headers=bearer(token))
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'vigil_http_requests_total{method="GET",route="/v1/anomalies",status="200"}' in metrics.text
    # Labelled by route template, never by raw path (ids would explode the series count).
    assert 'route="/v1/anomalies/{anomaly_id}",status="404"' in metrics.text
    assert "00000000abcd" not in metrics.text


def test_readiness_reports_a_dead_broker(api_settings: Settings, db: Engine) -> None:
    broken = api_settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"})
    with TestClient(create_app(broken, ports=ApiPorts(), engine=db)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["checks"] == {"database": True, "kafka": False}


def test_rate_limit_per_client_with_retry_after(api_settings: Settings, db: Engine, token_for: TokenFactory) -> None:
    limited = api_settings.model_copy(update={"api_rate_limit_per_second": 0.5, "api_rate_limit_burst": 3})
    app = create_app(limited, ports=ApiPorts(), engine=db)
    from tests.api.conftest import context

    tokens = []
    for name in ("client-one", "client-two"):
        token_for("viewer", principal_id=name)
        tokens.append(context(app).issuer.issue(context(app).principals.get(name).as_principal()))  # type: ignore[union-attr]
    with TestClient(app) as client:
        codes = [client.get("/v1/auth/me", headers=bearer(tokens[0])).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited_response = client.get("/v1/auth/me", headers=bearer(tokens[0]))
        assert limited_response.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited_response.headers["Retry-After"]) <= 2
        # Another client has its own bucket.
        assert client.get("/v1/auth/me", headers=bearer(tokens[1])).status_code == 200


def test_errors_share_one_shape(client: TestClient, token_for: TokenFactory) -> None:
    token = token_for("viewer")
    for response in (
        client.get("/v1/nothing-here", headers=bearer(token)),
        client.delete("/v1/anomalies", headers=bearer(token)),
        client.get("/v1/anomalies?limit=0", headers=bearer(token)),
        client.get("/v1/anomalies"),
    ):
        assert response.status_code in (401, 404, 405, 422)
        assert set(response.json()) == {"error"}
        assert set(response.json()["error"]) == {"code", "message", "details"}
    not_allowed = client.put("/v1/rules/r1", headers=bearer(token))
    assert not_allowed.status_code == 405 and not_allowed.headers["Allow"] == "GET, PATCH, HEAD"


def test_dashboard_is_served_with_spa_fallback(api_settings: Settings, db: Engine, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<html>vigil dashboard</html>")
    (dist / "assets" / "app.js").write_text("console.log('vigil')")
    app = create_app(api_settings.model_copy(update={"web_dist_dir": dist}), ports=ApiPorts(), engine=db)
    with TestClient(app) as client:
        assert "vigil dashboard" in client.get("/").text
        assert "console.log" in client.get("/assets/app.js").text
        assert "vigil dashboard" in client.get("/cases/5b7f0c7e").text  # client-side route
        api_miss = client.get("/v1/unknown")
        assert api_miss.status_code == 404 and api_miss.json()["error"]["code"] == "not_found"
        assert client.get("/healthz").json() == {"live": True}


def test_transaction_detail_and_entity_timeline(
    client: TestClient, db: Engine, seeded: Seeded, token_for: TokenFactory
) -> None:
    with db.begin() as connection:
        connection.execute(
            insert(transactions),
            [
                transaction_row(TENANT_A, f"tx-card-{i}", card_id="card-7", occurred_at=BASE_TIME - timedelta(hours=i))
                for i in range(5)
            ],
        )
        connection.execute(
            insert(anomalies),
            anomaly_row(TENANT_A, "tx-card-0", entity_type="card", entity_id="card-7"),
        )
        connection.execute(  # the snapshot is stored once per transaction (ADR 0011)
            insert(anomaly_features),
            {
                "tenant_id": TENANT_A,
                "transaction_id": "tx-card-0",
                "event_time": BASE_TIME,
                "features": {"card_count_1h": 5.0},
            },
        )
    token = token_for("viewer")
    detail = client.get("/v1/transactions/tx-tenant-a", headers=bearer(token)).json()
    # Stored as 42.5000 (four decimals for every currency), shown as sent: it can be submitted again.
    assert detail["amount"] == "42.50" and detail["case"]["status"] == "open"
    assert [a["detector_name"] for a in detail["anomalies"]] == ["amount_zscore"]
    timeline = client.get("/v1/entities/card/card-7/timeline?limit=3", headers=bearer(token)).json()
    assert [t["transaction_id"] for t in timeline["transactions"]] == ["tx-card-0", "tx-card-1", "tx-card-2"]
    assert [a["transaction_id"] for a in timeline["anomalies"]] == ["tx-card-0"]
    assert timeline["latest_features"] == {"card_count_1h": 5.0}
    assert client.get("/v1/entities/device/nope/timeline", headers=bearer(token)).status_code == 404
    assert client.get("/v1/transactions/tx-none", headers=bearer(token)).status_code == 404


def test_an_id_two_tenants_share_is_each_tenants_own_and_ambiguous_only_when_both_are_visible(
    client: TestClient, db: Engine, token_for: TokenFactory
) -> None:
    """Transaction ids are unique per tenant (ADR 0013): `tx-shared` is two transactions."""
    with db.begin() as connection:
        for tenant, amount, score in ((TENANT_A, "10.00", 61.0), (TENANT_B, "20.00", 95.0)):
            connection.execute(insert(transactions), transaction_row(tenant, "tx-shared", amount=amount))
            connection.execute(insert(anomalies), anomaly_row(tenant, "tx-shared", score=score))
            connection.execute(insert(cases), case_row(tenant, "tx-shared", max_score=score))
            connection.execute(
                insert(anomaly_features),
                {"tenant_id": tenant, "transaction_id": "tx-shared", "event_time": BASE_TIME, "features": {"x": score}},
            )
    only_a, both, admin = token_for("viewer"), token_for("viewer", (TENANT_A, TENANT_B)), token_for("admin", ())
    own = client.get("/v1/transactions/tx-shared", headers=bearer(only_a)).json()
    assert (own["tenant_id"], own["amount"], own["case"]["max_score"]) == (TENANT_A, "10.00", 61.0)
    assert [a["score"] for a in own["anomalies"]] == [61.0]
    decision = client.get("/v1/decisions/tx-shared", headers=bearer(only_a)).json()
    assert (decision["tenant_id"], decision["score"]) == (TENANT_A, 61.0)
    for token in (both, admin):
        for url in ("/v1/transactions/tx-shared", "/v1/decisions/tx-shared"):
            ambiguous = client.get(url, headers=bearer(token))
            assert ambiguous.status_code == 409, ambiguous.text
            error = ambiguous.json()["error"]
            assert error["code"] == "ambiguous_transaction_id" and f"{TENANT_A}, {TENANT_B}" in error["message"]
        named = client.get(f"/v1/transactions/tx-shared?tenant_id={TENANT_B}", headers=bearer(token)).json()
        assert (named["tenant_id"], named["amount"], [a["score"] for a in named["anomalies"]]) == (
            TENANT_B,
            "20.00",
            [95.0],
        )
    # Each anomaly shows its own tenant's snapshot, not the other tenant's with the same id and time.
    listed = client.get("/v1/anomalies?transaction_id=tx-shared", headers=bearer(admin)).json()["data"]
    for summary in listed:
        detail = client.get(f"/v1/anomalies/{summary['anomaly_id']}", headers=bearer(admin)).json()
        assert detail["features"] == {"x": detail["score"]}
    assert len({summary["anomaly_id"] for summary in listed}) == 2


def test_silences_are_created_listed_expired_and_audited(
    client: TestClient, db: Engine, token_for: TokenFactory
) -> None:
    token = token_for("analyst", principal_id="alice")
    ends = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    created = client.post(
        "/v1/silences",
        json={
            "matchers": [{"label": "merchant_id", "op": "=~", "value": "m-9.*"}],
            "ends_at": ends,
            "comment": "promotion",
        },
        headers=bearer(token),
    )
    assert created.status_code == 201, created.text
    silence = created.json()
    assert silence["tenant_id"] == TENANT_A and silence["active"] is True and silence["created_by"] == "alice"
    active = client.get("/v1/silences?active=true", headers=bearer(token)).json()["data"]
    assert [s["silence_id"] for s in active] == [silence["silence_id"]]
    expired = client.post(f"/v1/silences/{silence['silence_id']}:expire", headers=bearer(token))
    assert expired.status_code == 200 and expired.json()["active"] is False and expired.json()["expired_by"] == "alice"
    again = client.post(f"/v1/silences/{silence['silence_id']}:expire", headers=bearer(token))
    assert again.status_code == 200 and again.json()["expired_at"] == expired.json()["expired_at"]
    assert client.get("/v1/silences?active=true", headers=bearer(token)).json()["data"] == []
    for bad in (
        {"matchers": [], "ends_at": ends, "comment": "x"},
        {"matchers": [{"label": "a", "op": "=~", "value": "("}], "ends_at": ends, "comment": "x"},
        {"matchers": [{"label": "a"}], "ends_at": "2020-01-01T00:00:00Z", "comment": "x"},
        {"matchers": [{"label": "a"}], "ends_at": ends, "comment": "   "},
    ):
        assert client.post("/v1/silences", json=bad, headers=bearer(token)).status_code == 422, bad
    with db.connect() as connection:
        actions = connection.execute(select(audit_log.c.action).order_by(audit_log.c.audit_id)).scalars().all()
    assert actions == ["silence.create", "silence.expire"]


def test_notification_log(client: TestClient, db: Engine, token_for: TokenFactory) -> None:
    with db.begin() as connection:
        connection.execute(
            insert(notifications),
            [
                {
                    "dedup_key": f"d-{i}",
                    "group_key": "g",
                    "receiver": "slack" if i % 2 else "email",
                    "tenant_id": TENANT_A if i < 5 else None,
                    "severity": "critical",
                    "status": "sent" if i % 3 else "failed",
                    "title": f"alert {i}",
                }
                for i in range(7)
            ],
        )
    viewer = client.get("/v1/alerts?limit=2", headers=bearer(token_for("viewer"))).json()
    assert [n["title"] for n in viewer["data"]] == ["alert 4", "alert 3"]
    rest = client.get(f"/v1/alerts?cursor={viewer['next_cursor']}", headers=bearer(token_for("viewer"))).json()
    assert [n["title"] for n in rest["data"]] == ["alert 2", "alert 1", "alert 0"]
    failed = client.get("/v1/alerts?status=failed&receiver=email", headers=bearer(token_for("viewer"))).json()
    assert [n["title"] for n in failed["data"]] == ["alert 0"]
    admin = client.get("/v1/alerts", headers=bearer(token_for("admin", ()))).json()
    assert len(admin["data"]) == 7  # system alerts (no tenant) are for admins


class FixedScorer:
    """A `Scorer` with a fixed verdict, to test the API side of scoring (thresholds, reasons, tenancy)."""

    def __init__(self, score: float, *, in_memory: bool = False) -> None:
        self.value = score
        self.in_memory = in_memory  # answers `score_now` (the event loop's path), like a ready follower
        self.seen: list[Transaction] = []
        self.threads: list[str] = []

    def score_now(self, transaction: Transaction) -> ScoreOutcome | None:
        return self.score(transaction) if self.in_memory else None

    def score(self, transaction: Transaction) -> ScoreOutcome:
        self.seen.append(transaction)
        self.threads.append(threading.current_thread().name)
        reason = Reason(feature="amount", value=float(transaction.amount), baseline=10.0, text="Amount is high.")
        return ScoreOutcome(
            score=self.value,
            verdicts=[
                DetectorVerdict(
                    family="statistical", name="amount_zscore", version="1", score=self.value, reasons=[reason]
                ),
                DetectorVerdict(family="ml", name="iforest", version="3", score=None),
            ],
            degraded=["ml:iforest"],
        )


@pytest.mark.parametrize(
    ("score", "decision", "in_memory"),
    [(10.0, "approve", False), (50.0, "review", True), (79.9, "review", False), (80.0, "decline", True)],
)
def test_score_applies_the_configured_thresholds(
    api_settings: Settings, db: Engine, token_for: TokenFactory, score: float, decision: str, in_memory: bool
) -> None:
    scorer = FixedScorer(score, in_memory=in_memory)
    app = create_app(api_settings, ports=ApiPorts(scorer=scorer), engine=db)
    body: dict[str, Any] = {
        "transaction_id": "tx-s",
        "occurred_at": "2026-11-24T10:00:00Z",
        "account_id": "a",
        "merchant_id": "m",
        "merchant_category": "5411",
        "amount": "250.00",
        "currency": "EUR",
        "channel": "ecommerce",
        "country": "DE",
    }
    with TestClient(app) as client:
        response = client.post("/v1/score", json=body, headers=bearer(token_for("ingest", kind="client")))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["decision"] == decision and result["score"] == score
    assert result["tenant_id"] == TENANT_A and scorer.seen[0].tenant_id == TENANT_A
    assert result["thresholds"] == {"review": 50.0, "decline": 80.0}
    assert result["reasons"][0]["text"] == "Amount is high."
    assert result["degraded"] == ["ml:iforest"] and result["detectors"][1]["score"] is None
    # In memory: scored on the event loop's thread; otherwise (it may read the database) on a worker thread.
    assert len(scorer.seen) == 1
    assert scorer.threads[0].startswith("AnyIO worker thread") is not in_memory


def test_principal_cache_loads_each_principal_once_under_concurrency(db: Engine, token_for: TokenFactory) -> None:
    from sqlalchemy import event

    from api.context import PrincipalCache

    token_for("viewer", principal_id="busy-client")
    loads = 0

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        nonlocal loads
        if "FROM principals" in statement:
            loads += 1

    cache = PrincipalCache(db, ttl_seconds=60)
    event.listen(db, "before_cursor_execute", count)
    try:
        barrier = threading.Barrier(16)

        def hit() -> None:
            barrier.wait()
            record = cache.get("busy-client")
            assert record is not None and record.principal_id == "busy-client"

        threads = [threading.Thread(target=hit) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        event.remove(db, "before_cursor_execute", count)
    assert loads == 1
    assert cache.cached("busy-client")[0] is True and cache.cached("someone-else") == (False, None)
