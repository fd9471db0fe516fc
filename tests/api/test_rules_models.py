"""Rules over HTTP with the real rules engine (wired as `vigil run api` wires it), and models via real MLflow."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, insert, select
from starlette.testclient import TestClient

from api import ApiPorts, MlflowModelRegistry, create_app
from core.schema import audit_log, rule_versions, transactions
from core.settings import Settings
from tests.api.conftest import TENANT_A, TENANT_B, TokenFactory, bearer, transaction_row
from vigil.commands.api import build_ports

pytestmark = pytest.mark.integration


@pytest.fixture
def wired_app(api_settings: Settings, db: Engine) -> Iterator[FastAPI]:
    ports = build_ports(api_settings)
    yield create_app(api_settings, ports=ports, engine=db)
    close = getattr(ports.rule_engine, "close", None)
    if close is not None:
        close()


@pytest.fixture
def wired(wired_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(wired_app) as client:
        yield client


def test_rule_lifecycle_versions_are_immutable_and_audited(
    wired: TestClient, db: Engine, token_for: TokenFactory
) -> None:
    token = token_for("analyst", (TENANT_A,), principal_id="alice")
    rule = {
        "rule_id": "big-amount",
        "name": "Big amount",
        "description": "Large payments",
        "expression": "amount > 1000",
        "severity": "warning",
    }
    created = wired.post("/v1/rules", json=rule, headers=bearer(token))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["tenant_id"] == TENANT_A  # the analyst's only tenant
    assert body["current_version"] == 1 and body["current"]["expression"] == "amount > 1000"
    assert wired.post("/v1/rules", json=rule, headers=bearer(token)).status_code == 409

    version = wired.post(
        "/v1/rules/big-amount/versions",
        json={"expression": 'amount > 5000 and channel == "ecommerce"', "severity": "critical"},
        headers=bearer(token),
    )
    assert version.status_code == 201, version.text
    assert version.json()["current_version"] == 2
    assert [v["version"] for v in version.json()["versions"]] == [2, 1]
    first = wired.get("/v1/rules/big-amount/versions/1", headers=bearer(token)).json()
    assert first["expression"] == "amount > 1000" and first["severity"] == "warning"  # unchanged

    disabled = wired.patch("/v1/rules/big-amount", json={"enabled": False}, headers=bearer(token))
    assert disabled.json()["enabled"] is False
    listed = wired.get("/v1/rules?enabled=false", headers=bearer(token)).json()["data"]
    assert [r["rule_id"] for r in listed] == ["big-amount"]
    with db.connect() as connection:
        actions = connection.execute(
            select(audit_log.c.action, audit_log.c.actor).where(audit_log.c.object_id == "big-amount")
        ).all()
        stored = connection.execute(select(rule_versions.c.version)).scalars().all()
    assert [tuple(a) for a in actions] == [
        ("rule.create", "alice"),
        ("rule.version", "alice"),
        ("rule.disable", "alice"),
    ]
    assert sorted(stored) == [1, 2]


def test_invalid_expressions_are_rejected_with_positions(
    wired: TestClient, db: Engine, token_for: TokenFactory
) -> None:
    token = token_for("analyst")
    result = wired.post("/v1/rules:validate", json={"expression": "amout > 100"}, headers=bearer(token)).json()
    assert result["valid"] is False
    error = result["errors"][0]
    assert (error["line"], error["column"]) == (1, 1) and "amount" in error["message"]
    assert wired.post("/v1/rules:validate", json={"expression": "amount > 1"}, headers=bearer(token)).json() == {
        "valid": True,
        "errors": [],
    }
    bad = wired.post(
        "/v1/rules", json={"name": "x", "expression": "amount >", "severity": "info"}, headers=bearer(token)
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_expression"
    assert bad.json()["error"]["details"][0]["column"] >= 8
    with db.connect() as connection:
        assert connection.execute(select(rule_versions)).first() is None  # nothing stored


def test_global_rules_are_admin_only(wired: TestClient, token_for: TokenFactory) -> None:
    rule = {"name": "all tenants", "expression": "amount > 1", "severity": "info"}
    two = token_for("analyst", (TENANT_A, TENANT_B))
    assert wired.post("/v1/rules", json=rule, headers=bearer(two)).status_code == 422  # must name a tenant
    admin = wired.post("/v1/rules", json=rule, headers=bearer(token_for("admin", ())))
    assert admin.status_code == 201 and admin.json()["tenant_id"] is None
    rule_id = admin.json()["rule_id"]
    viewer = wired.get(f"/v1/rules/{rule_id}", headers=bearer(token_for("viewer")))
    assert viewer.status_code == 200  # every tenant sees all-tenant rules
    change = wired.patch(f"/v1/rules/{rule_id}", json={"enabled": False}, headers=bearer(token_for("analyst")))
    assert change.status_code == 403


def test_backtest_goes_through_the_rules_engine(wired: TestClient, db: Engine, token_for: TokenFactory) -> None:
    from datetime import timedelta

    from tests.api.conftest import BASE_TIME

    with db.begin() as connection:
        connection.execute(
            insert(transactions),
            [
                transaction_row(TENANT_A, f"tx-{i}", amount=amount, occurred_at=BASE_TIME + timedelta(minutes=i))
                for i, amount in enumerate([5, 50, 5000, 7000])
            ],
        )
    response = wired.post(
        "/v1/rules:backtest",
        json={"expression": "amount > 1000", "from": "2026-11-20T00:00:00Z", "to": "2026-11-21T00:00:00Z"},
        headers=bearer(token_for("analyst")),
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["evaluated"], report["hits"]) == (4, 2)
    assert sorted(report["sample_transaction_ids"]) == ["tx-2", "tx-3"]


def test_unwired_ports_answer_503_with_a_clear_message(client: TestClient, token_for: TokenFactory) -> None:
    token = token_for("admin", ())
    for method, url, body in (
        ("POST", "/v1/rules:validate", {"expression": "amount > 1"}),
        ("GET", "/v1/models", None),
        ("POST", "/v1/score", None),
    ):
        if url == "/v1/score":
            body = {
                "transaction_id": "t",
                "tenant_id": TENANT_A,
                "occurred_at": "2026-11-24T10:00:00Z",
                "account_id": "a",
                "merchant_id": "m",
                "merchant_category": "5411",
                "amount": "1.00",
                "currency": "EUR",
                "channel": "atm",
                "country": "DE",
            }
        response = client.request(method, url, json=body, headers=bearer(token))
        assert response.status_code == 503, url
        assert response.json()["error"]["code"] == "port_unavailable"
        assert "not wired" in response.json()["error"]["message"]


# --- models (real MLflow) ---------------------------------------------------------------------------


@pytest.fixture
def model_name(api_settings: Settings) -> Iterator[str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=api_settings.mlflow_tracking_uri)
    name = f"vigil-api-test-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name, description="test model")
    experiment = client.get_experiment_by_name("Default")
    experiment_id = experiment.experiment_id if experiment is not None else "0"
    runs = []
    for i in range(3):
        run = client.create_run(experiment_id)
        client.log_metric(run.info.run_id, "average_precision", 0.5 + i / 10)
        client.set_terminated(run.info.run_id)
        client.create_model_version(name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        runs.append(run.info.run_id)
    yield name
    client.delete_registered_model(name)
    for run_id in runs:
        client.delete_run(run_id)


def test_models_list_promote_and_rollback(
    api_settings: Settings, db: Engine, token_for: TokenFactory, model_name: str
) -> None:
    registry = MlflowModelRegistry(api_settings.mlflow_tracking_uri)
    app = create_app(api_settings, ports=ApiPorts(model_registry=registry), engine=db)
    admin = bearer(token_for("admin", (), principal_id="root"))
    with TestClient(app) as client:
        promote = client.post(f"/v1/models/{model_name}:promote", json={"version": "1"}, headers=admin)
        assert promote.status_code == 200, promote.text
        assert promote.json() == {"name": model_name, "alias": "champion", "previous_version": None, "version": "1"}
        client.post(f"/v1/models/{model_name}:promote", json={"version": "3"}, headers=admin)
        listed = client.get("/v1/models", headers=bearer(token_for("viewer"))).json()["data"]
        model = next(m for m in listed if m["name"] == model_name)
        assert model["aliases"] == {"champion": "3"}
        assert [v["version"] for v in model["versions"]] == ["3", "2", "1"]
        assert model["versions"][0]["aliases"] == ["champion"]
        assert model["versions"][0]["metrics"] == {"average_precision": pytest.approx(0.7)}

        back = client.post(f"/v1/models/{model_name}:rollback", json={}, headers=admin)
        assert back.json() == {"name": model_name, "alias": "champion", "previous_version": "3", "version": "1"}
        again = client.post(f"/v1/models/{model_name}:rollback", json={}, headers=admin)
        assert again.status_code == 404  # no earlier version left
        missing = client.post(f"/v1/models/{model_name}:promote", json={"version": "99"}, headers=admin)
        assert missing.status_code == 404
        assert client.post("/v1/models/no-such-model:rollback", json={}, headers=admin).status_code == 404
        analyst = client.post(
            f"/v1/models/{model_name}:promote", json={"version": "2"}, headers=bearer(token_for("analyst"))
        )
        assert analyst.status_code == 403
    with db.connect() as connection:
        actions = connection.execute(
            select(audit_log.c.action, audit_log.c.details).where(audit_log.c.object_id == model_name)
        ).all()
    assert [(a, d["from"], d["to"]) for a, d in actions] == [
        ("model.promote", None, "1"),
        ("model.promote", "1", "3"),
        ("model.rollback", "3", "1"),
    ]
