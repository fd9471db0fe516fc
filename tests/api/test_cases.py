"""Cases: verdicts become labels, every change is audited, entity grouping, facility privacy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import Engine, insert, select, text
from starlette.testclient import TestClient

from core.schema import anomalies, audit_log, cases, labels
from tests.api.conftest import (
    BASE_TIME,
    TENANT_A,
    Seeded,
    TokenFactory,
    anomaly_row,
    bearer,
    case_row,
)

pytestmark = pytest.mark.integration


def _audit(db: Engine) -> list[dict[str, Any]]:
    with db.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(select(audit_log).order_by(audit_log.c.audit_id))]


def test_verdicts_write_labels_notes_and_audit(
    client: TestClient, db: Engine, seeded: Seeded, token_for: TokenFactory
) -> None:
    case_id = seeded.cases[TENANT_A]["case_id"]
    with db.begin() as connection:  # a second detector's verdict on the same transaction
        connection.execute(
            insert(anomalies).values(
                anomaly_row(TENANT_A, "tx-tenant-a", detector_name="rule:burst", detector_family="rules", score=100.0)
            )
        )
    token = token_for("analyst", principal_id="alice")
    detail = client.get(f"/v1/cases/{case_id}", headers=bearer(token)).json()
    assert {a["detector_name"] for a in detail["anomalies"]} == {"amount_zscore", "rule:burst"}
    assert detail["anomalies"][0]["score"] == 100.0  # highest first
    assert detail["label"] is None and detail["notes"] == []

    investigating = client.patch(f"/v1/cases/{case_id}", json={"status": "investigating"}, headers=bearer(token))
    assert investigating.status_code == 200
    with db.connect() as connection:
        statuses = set(
            connection.execute(select(anomalies.c.status).where(anomalies.c.tenant_id == TENANT_A)).scalars()
        )
    assert statuses == {"acknowledged"}

    verdict = client.patch(
        f"/v1/cases/{case_id}",
        json={"status": "confirmed_fraud", "note": "Cardholder confirmed theft.", "assignee": "alice"},
        headers=bearer(token),
    )
    assert verdict.status_code == 200, verdict.text
    body = verdict.json()
    assert body["status"] == "confirmed_fraud" and body["assignee"] == "alice"
    assert body["label"]["label"] == "fraud" and body["label"]["source"] == "analyst"
    assert body["label"]["author"] == "alice" and body["label"]["reason"] == "Cardholder confirmed theft."
    assert [n["body"] for n in body["notes"]] == ["Cardholder confirmed theft."]
    assert {a["status"] for a in body["anomalies"]} == {"resolved"}

    # Changing the verdict updates the one analyst label; reopening withdraws it.
    client.patch(f"/v1/cases/{case_id}", json={"status": "false_positive"}, headers=bearer(token))
    with db.connect() as connection:
        stored = connection.execute(select(labels.c.label, labels.c.source)).all()
    assert [tuple(r) for r in stored] == [("false_positive", "analyst")]
    reopened = client.patch(f"/v1/cases/{case_id}", json={"status": "open", "assignee": None}, headers=bearer(token))
    assert reopened.json()["label"] is None and reopened.json()["assignee"] is None

    actions = [(e["action"], e["actor"], e["tenant_id"]) for e in _audit(db)]
    assert actions == [
        ("case.status", "alice", TENANT_A),
        ("label.set", "alice", TENANT_A),
        ("case.status", "alice", TENANT_A),
        ("case.assign", "alice", TENANT_A),
        ("case.note", "alice", TENANT_A),
        ("label.set", "alice", TENANT_A),
        ("case.status", "alice", TENANT_A),
        ("label.withdraw", "alice", TENANT_A),
        ("case.status", "alice", TENANT_A),
        ("case.assign", "alice", TENANT_A),
    ]
    # An empty change is a no-op, not an error, and writes nothing.
    assert client.patch(f"/v1/cases/{case_id}", json={}, headers=bearer(token)).status_code == 200
    assert len(_audit(db)) == 10

    history = client.get(f"/v1/audit?object_id={case_id}&limit=3", headers=bearer(token)).json()
    assert [e["action"] for e in history["data"]] == ["case.assign", "case.status", "case.status"]
    assert history["next_cursor"] is not None
    older = client.get(f"/v1/audit?object_id={case_id}&cursor={history['next_cursor']}", headers=bearer(token))
    assert len(older.json()["data"]) == 4


def test_audit_log_is_append_only(db: Engine, seeded: Seeded) -> None:
    with db.begin() as connection:
        connection.execute(insert(audit_log).values(actor="x", action="a", object_type="case", object_id="1"))
    for statement in ("UPDATE audit_log SET actor = 'y'", "DELETE FROM audit_log"):
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"), db.begin() as connection:
            connection.execute(text(statement))


def test_invalid_changes_are_422_with_field_details(
    client: TestClient, seeded: Seeded, token_for: TokenFactory
) -> None:
    case_id = seeded.cases[TENANT_A]["case_id"]
    token = token_for("analyst")
    for body in ({"status": "closed"}, {"note": ""}, {"colour": "red"}, {"assignee": "bad name!"}):
        response = client.patch(f"/v1/cases/{case_id}", json=body, headers=bearer(token))
        assert response.status_code == 422, body
        assert response.json()["error"]["details"][0]["loc"][0] == "body"
    # Ids are UUIDs by route: anything else names no resource.
    assert client.patch("/v1/cases/not-a-uuid", json={}, headers=bearer(token)).status_code == 404


def test_case_queue_filters_and_entity_groups(client: TestClient, db: Engine, token_for: TokenFactory) -> None:
    rows = [
        case_row(
            TENANT_A,
            f"tx-{i}",
            entity_id=f"acc-{i % 3}",
            event_time=BASE_TIME - timedelta(hours=i),
            status="open" if i % 2 else "confirmed_fraud",
            max_severity=("info", "warning", "critical")[(i // 3) % 3],
            max_score=float(10 * i),
            anomaly_count=i + 1,
        )
        for i in range(12)
    ]
    with db.begin() as connection:
        connection.execute(insert(cases), rows)
    token = token_for("viewer")
    open_only = client.get("/v1/cases?status=open&limit=4", headers=bearer(token)).json()
    assert len(open_only["data"]) == 4 and {c["status"] for c in open_only["data"]} == {"open"}
    rest = client.get(f"/v1/cases?status=open&limit=4&cursor={open_only['next_cursor']}", headers=bearer(token)).json()
    assert {c["transaction_id"] for c in open_only["data"] + rest["data"]} == {f"tx-{i}" for i in range(1, 12, 2)}
    by_score = client.get("/v1/cases?sort=-max_score&limit=3", headers=bearer(token)).json()["data"]
    assert [c["transaction_id"] for c in by_score] == ["tx-11", "tx-10", "tx-9"]

    groups = client.get("/v1/cases/entities", headers=bearer(token)).json()["data"]
    assert [g["entity_id"] for g in groups] == ["acc-0", "acc-1", "acc-2"]  # most recently active first
    acc0 = groups[0]
    assert acc0["case_count"] == 4 and acc0["anomaly_count"] == 1 + 4 + 7 + 10
    assert acc0["max_severity"] == "critical" and acc0["open_cases"] == 2  # i = 0, 3, 6, 9
    active = client.get("/v1/cases/entities?active=true&limit=2", headers=bearer(token)).json()
    assert len(active["data"]) == 2 and active["next_cursor"] is not None
    entity = client.get("/v1/cases/entities/account/acc-1", headers=bearer(token)).json()
    assert entity["groups"][0]["max_severity"] == "critical"
    assert {c["transaction_id"] for c in entity["cases"]} == {"tx-1", "tx-4", "tx-7", "tx-10"}
    assert client.get("/v1/cases/entities/account/nobody", headers=bearer(token)).status_code == 404


def test_ingest_clients_read_decisions_without_analyst_data(
    client: TestClient, db: Engine, seeded: Seeded, token_for: TokenFactory
) -> None:
    analyst = token_for("analyst")
    case_id = seeded.cases[TENANT_A]["case_id"]
    client.patch(
        f"/v1/cases/{case_id}",
        json={"status": "confirmed_fraud", "note": "PRIVATE analyst note", "assignee": "alice"},
        headers=bearer(analyst),
    )
    ingest = token_for("ingest", kind="client")
    decision = client.get("/v1/decisions/tx-tenant-a", headers=bearer(ingest))
    assert decision.status_code == 200
    body = decision.json()
    assert body["decision"] == "decline" and body["score"] == 85.0 and body["known"] is True
    assert body["anomalies"][0]["reasons"] == ["secret-tenant-a amount"]
    for private in ("PRIVATE analyst note", "alice", "confirmed_fraud", 'fraud"', "assignee", "label", "note"):
        assert private not in decision.text
    for url in (f"/v1/cases/{case_id}", "/v1/audit", "/v1/anomalies", "/v1/transactions/tx-tenant-a"):
        assert client.get(url, headers=bearer(ingest)).status_code == 403
    unknown = client.get("/v1/decisions/tx-never-seen", headers=bearer(ingest))
    assert unknown.status_code == 404
