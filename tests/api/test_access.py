"""The role x endpoint matrix and the cross-tenant matrix.

The expected matrix is written out here on purpose, independently of
`api.permissions`, so a change to the code's table has to be made twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, insert, text
from starlette.testclient import TestClient

from api import ApiPorts, Principal, Role, create_app
from core.schema import (
    anomalies,
    audit_log,
    cases,
    metadata,
    notifications,
    principals,
    rule_versions,
    rules,
    silences,
    transactions,
)
from core.settings import Settings
from tests.api.conftest import (
    TENANT_A,
    TENANT_B,
    KeyPair,
    anomaly_row,
    bearer,
    case_row,
    context,
    transaction_row,
)

pytestmark = pytest.mark.integration

ROLES = ("admin", "analyst", "viewer", "ingest")
READERS = frozenset({"admin", "analyst", "viewer"})
WRITERS = frozenset({"admin", "analyst"})
EVERYONE = frozenset(ROLES)


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # OpenAPI template
    url: str  # with tenant A's ids, see `_ids`
    allowed: frozenset[str]
    body: Any = None
    form: dict[str, str] | None = None


def _calls() -> list[Call]:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    silence = {"matchers": [{"label": "merchant_id", "value": "m-1"}], "ends_at": later, "comment": "test"}
    return [
        Call("GET", "/v1/auth/me", "/v1/auth/me", EVERYONE),
        Call("GET", "/v1/anomalies", "/v1/anomalies", READERS),
        Call("GET", "/v1/anomalies/{anomaly_id}", "/v1/anomalies/{anomaly_a}", READERS),
        Call("GET", "/v1/cases", "/v1/cases", READERS),
        Call("GET", "/v1/cases/entities", "/v1/cases/entities", READERS),
        Call(
            "GET",
            "/v1/cases/entities/{entity_type}/{entity_id}",
            "/v1/cases/entities/account/acc-tenant-a",
            READERS,
        ),
        Call("GET", "/v1/cases/{case_id}", "/v1/cases/{case_a}", READERS),
        Call("PATCH", "/v1/cases/{case_id}", "/v1/cases/{case_a}", WRITERS, body={"assignee": "alice"}),
        Call("GET", "/v1/audit", "/v1/audit", WRITERS),
        Call("GET", "/v1/metrics/precision", "/v1/metrics/precision", READERS),
        Call("GET", "/v1/transactions/{transaction_id}", "/v1/transactions/tx-tenant-a", READERS),
        Call(
            "GET",
            "/v1/entities/{entity_type}/{entity_id}/timeline",
            "/v1/entities/account/acc-tenant-a/timeline",
            READERS,
        ),
        Call("GET", "/v1/stats/summary", "/v1/stats/summary", READERS),
        Call("GET", "/v1/stats/trends", "/v1/stats/trends", READERS),
        Call("GET", "/v1/rules", "/v1/rules", READERS),
        Call(
            "POST",
            "/v1/rules",
            "/v1/rules",
            WRITERS,
            body={"name": "n", "expression": "amount > 1", "severity": "info", "tenant_id": TENANT_A},
        ),
        Call("GET", "/v1/rules/{rule_id}", "/v1/rules/rule-a", READERS),
        Call("PATCH", "/v1/rules/{rule_id}", "/v1/rules/rule-a", WRITERS, body={"enabled": False}),
        Call(
            "POST",
            "/v1/rules/{rule_id}/versions",
            "/v1/rules/rule-a/versions",
            WRITERS,
            body={"expression": "amount > 2", "severity": "info"},
        ),
        Call("GET", "/v1/rules/{rule_id}/versions/{version}", "/v1/rules/rule-a/versions/1", READERS),
        Call("POST", "/v1/rules:validate", "/v1/rules:validate", WRITERS, body={"expression": "amount > 1"}),
        Call(
            "POST",
            "/v1/rules:backtest",
            "/v1/rules:backtest",
            WRITERS,
            body={"expression": "amount > 1", "from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"},
        ),
        Call("GET", "/v1/models", "/v1/models", READERS),
        Call("POST", "/v1/models/{name}:promote", "/v1/models/m:promote", frozenset({"admin"}), body={"version": "1"}),
        Call("POST", "/v1/models/{name}:rollback", "/v1/models/m:rollback", frozenset({"admin"}), body={}),
        Call("POST", "/v1/score", "/v1/score", frozenset({"admin", "analyst", "ingest"}), body={}),
        Call("POST", "/v1/transactions", "/v1/transactions", frozenset({"admin", "ingest"}), body={}),
        Call(
            "POST",
            "/v1/transactions:batch",
            "/v1/transactions:batch",
            frozenset({"admin", "ingest"}),
            body={"transactions": [{}]},
        ),
        Call("GET", "/v1/decisions/{transaction_id}", "/v1/decisions/tx-tenant-a", EVERYONE),
        Call("GET", "/v1/alerts", "/v1/alerts", READERS),
        Call("GET", "/v1/silences", "/v1/silences", READERS),
        Call("GET", "/v1/system/status", "/v1/system/status", frozenset({"admin", "analyst"})),
        Call("POST", "/v1/silences", "/v1/silences", WRITERS, body=silence),
        Call("POST", "/v1/silences/{silence_id}:expire", "/v1/silences/{silence_a}:expire", WRITERS),
    ]


PUBLIC = {
    ("POST", "/v1/auth/token"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/auth/jwks"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
}


@dataclass(frozen=True)
class Ids:
    values: dict[str, str]

    def url(self, template: str) -> str:
        return template.format(**self.values)


@dataclass
class Env:
    app: FastAPI
    client: TestClient
    engine: Engine
    ids: Ids

    def token(self, role: str, tenants: tuple[str, ...] = (TENANT_A,)) -> str:
        principal_id = f"{role}-{uuid.uuid4().hex[:8]}"
        with self.engine.begin() as connection:
            connection.execute(
                insert(principals).values(
                    principal_id=principal_id, kind="user", secret_hash="unused", roles=[role], tenants=list(tenants)
                )
            )
        principal = Principal(
            principal_id=principal_id, kind="user", roles=frozenset({Role(role)}), tenants=frozenset(tenants)
        )
        return context(self.app).issuer.issue(principal)


def _seed(engine: Engine) -> Ids:
    """Tenant A and B objects of every kind."""
    now = datetime.now(UTC)
    silence_ids = {TENANT_A: uuid.uuid4(), TENANT_B: uuid.uuid4()}
    found = {t: anomaly_row(t, f"tx-{t}") for t in (TENANT_A, TENANT_B)}
    opened = {t: case_row(t, f"tx-{t}") for t in (TENANT_A, TENANT_B)}
    with engine.begin() as connection:
        connection.execute(insert(transactions), [transaction_row(t, f"tx-{t}") for t in (TENANT_A, TENANT_B)])
        connection.execute(insert(anomalies), list(found.values()))
        connection.execute(insert(cases), list(opened.values()))
        for tenant in (TENANT_A, TENANT_B):
            rule_id = f"rule-{tenant[-1]}"
            connection.execute(
                insert(rules).values(rule_id=rule_id, tenant_id=tenant, name=f"secret-{tenant} rule", current_version=1)
            )
            connection.execute(
                insert(rule_versions).values(
                    rule_id=rule_id,
                    version=1,
                    name=f"secret-{tenant} rule",
                    expression="amount > 100",
                    severity="warning",
                    enabled=True,
                    author="seed",
                )
            )
            connection.execute(
                insert(silences).values(
                    silence_id=silence_ids[tenant],
                    tenant_id=tenant,
                    matchers=[{"label": "merchant_id", "op": "=", "value": f"secret-{tenant}"}],
                    starts_at=now,
                    ends_at=now + timedelta(hours=1),
                    created_by="seed",
                    comment=f"secret-{tenant} silence",
                )
            )
            connection.execute(
                insert(notifications).values(
                    dedup_key=f"dedup-{tenant}-{uuid.uuid4().hex}",
                    group_key=f"secret-{tenant}",
                    receiver="slack",
                    tenant_id=tenant,
                    severity="critical",
                    status="sent",
                    title=f"secret-{tenant} alert",
                )
            )
            connection.execute(
                insert(audit_log).values(
                    actor="seed",
                    tenant_id=tenant,
                    action="case.note",
                    object_type="case",
                    object_id=str(opened[tenant]["case_id"]),
                    details={"secret": f"secret-{tenant}"},
                )
            )
    return Ids(
        {
            "anomaly_a": str(found[TENANT_A]["anomaly_id"]),
            "anomaly_b": str(found[TENANT_B]["anomaly_id"]),
            "case_a": str(opened[TENANT_A]["case_id"]),
            "case_b": str(opened[TENANT_B]["case_id"]),
            "silence_a": str(silence_ids[TENANT_A]),
            "silence_b": str(silence_ids[TENANT_B]),
        }
    )


@pytest.fixture(scope="module")
def env(
    stack: Settings, database_url: str, session_engine: Engine, signing_key: KeyPair, tmp_path_factory: Any
) -> Iterator[Env]:
    """One app and one seeded data set for the whole module (the matrices only read, or write idempotently).

    Per-test truncation costs seconds on this machine; the module cleans up once at the end instead.
    """
    settings = stack.model_copy(
        update={
            "database_url": database_url,
            "kafka_topic_prefix": f"t{uuid.uuid4().hex[:10]}.",
            "jwt_private_key_file": signing_key.private_file,
            "api_rate_limit_per_second": 10_000.0,
            "api_rate_limit_burst": 10_000,
            "web_dist_dir": tmp_path_factory.mktemp("no-dashboard") / "dist",
        }
    )
    _truncate(session_engine)
    ids = _seed(session_engine)
    app = create_app(settings, ports=ApiPorts(), engine=session_engine)
    with TestClient(app) as client:
        yield Env(app=app, client=client, engine=session_engine, ids=ids)
    _truncate(session_engine)


def _truncate(engine: Engine) -> None:
    names = ", ".join(table.name for table in metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def _send(client: TestClient, call: Call, url: str, token: str) -> Any:
    return client.request(call.method, url, headers=bearer(token), json=call.body)


def test_every_operation_is_in_the_matrix(env: Env) -> None:
    spec = env.client.get("/openapi.json").json()
    documented = {
        (method.upper(), path) for path, item in spec["paths"].items() for method in item if method != "parameters"
    }
    covered = {(call.method, call.path) for call in _calls()} | PUBLIC
    assert documented == covered


def test_every_protected_operation_declares_bearer_security(env: Env) -> None:
    spec = env.client.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            secured = bool(operation.get("security"))
            assert secured == ((method.upper(), path) not in PUBLIC), (method, path)


@pytest.mark.parametrize("call", _calls(), ids=lambda c: f"{c.method} {c.path}")
def test_role_matrix(env: Env, call: Call) -> None:
    for role in ROLES:
        response = _send(env.client, call, env.ids.url(call.url), env.token(role))
        if role in call.allowed:
            assert response.status_code not in (401, 403), (role, response.text)
            assert response.status_code < 500 or response.status_code == 503, (role, response.text)
        else:
            assert response.status_code == 403, (role, response.text)
            assert response.json()["error"]["code"] == "forbidden"


# --- cross-tenant -------------------------------------------------------------------------------------

# Tenant A's principals aimed at tenant B's objects: each must answer 403 or 404 and show nothing of B.
CROSS_TENANT: list[tuple[str, str, str, Any]] = [
    ("viewer", "GET", "/v1/anomalies/{anomaly_b}", None),
    ("viewer", "GET", "/v1/anomalies?tenant_id=tenant-b", None),
    ("viewer", "GET", "/v1/cases/{case_b}", None),
    ("viewer", "GET", "/v1/cases?tenant_id=tenant-b", None),
    ("analyst", "PATCH", "/v1/cases/{case_b}", {"status": "confirmed_fraud", "note": "x"}),
    ("viewer", "GET", "/v1/cases/entities?tenant_id=tenant-b", None),
    ("viewer", "GET", "/v1/cases/entities/account/acc-tenant-b", None),
    ("viewer", "GET", "/v1/transactions/tx-tenant-b", None),
    ("viewer", "GET", "/v1/transactions/tx-tenant-b?tenant_id=tenant-b", None),
    ("viewer", "GET", "/v1/entities/account/acc-tenant-b/timeline", None),
    ("ingest", "GET", "/v1/decisions/tx-tenant-b", None),
    ("ingest", "GET", "/v1/decisions/tx-tenant-b?tenant_id=tenant-b", None),
    ("analyst", "GET", "/v1/audit?tenant_id=tenant-b", None),
    ("viewer", "GET", "/v1/metrics/precision?tenant_id=tenant-b", None),
    ("viewer", "GET", "/v1/stats/summary?tenant_id=tenant-b", None),
    ("viewer", "GET", "/v1/stats/trends?tenant_id=tenant-b", None),
    ("viewer", "GET", "/v1/rules/rule-b", None),
    ("viewer", "GET", "/v1/rules/rule-b/versions/1", None),
    ("viewer", "GET", "/v1/rules?tenant_id=tenant-b", None),
    ("analyst", "PATCH", "/v1/rules/rule-b", {"enabled": False}),
    ("analyst", "POST", "/v1/rules/rule-b/versions", {"expression": "amount > 1", "severity": "info"}),
    (
        "analyst",
        "POST",
        "/v1/rules",
        {"name": "n", "expression": "amount > 1", "severity": "info", "tenant_id": "tenant-b"},
    ),
    ("viewer", "GET", "/v1/alerts?tenant_id=tenant-b", None),
    ("viewer", "GET", "/v1/silences?tenant_id=tenant-b", None),
    ("analyst", "POST", "/v1/silences/{silence_b}:expire", None),
    (
        "analyst",
        "POST",
        "/v1/silences",
        {
            "tenant_id": "tenant-b",
            "matchers": [{"label": "a", "value": "b"}],
            "ends_at": "2999-01-01T00:00:00Z",
            "comment": "c",
        },
    ),
    ("ingest", "POST", "/v1/transactions", {"transaction_id": "t1", "tenant_id": "tenant-b"}),
    (
        "ingest",
        "POST",
        "/v1/transactions:batch",
        {"transactions": [{"tenant_id": "tenant-a"}, {"tenant_id": "tenant-b"}]},
    ),
    ("analyst", "POST", "/v1/score", {"transaction_id": "t1", "tenant_id": "tenant-b"}),
]


def _leaks(text: str) -> bool:
    return "tenant-b" in text or "secret-tenant-b" in text or "acc-tenant-b" in text


@pytest.mark.parametrize(("role", "method", "url", "body"), CROSS_TENANT, ids=lambda v: str(v)[:60])
def test_cross_tenant_access_is_refused_and_leaks_nothing(
    env: Env, role: str, method: str, url: str, body: Any
) -> None:
    response = env.client.request(method, env.ids.url(url), headers=bearer(env.token(role)), json=body)
    assert response.status_code in (403, 404), response.text
    assert set(response.json()) == {"error"}
    if "tenant-b" not in url and "tenant-b" not in str(body):
        assert not _leaks(response.text), response.text  # a 404 must not echo anything of B


@pytest.mark.parametrize(
    "url",
    [
        "/v1/anomalies",
        "/v1/cases",
        "/v1/cases/entities",
        "/v1/audit",
        "/v1/metrics/precision?from=2026-01-01T00:00:00Z",
        "/v1/stats/summary",
        "/v1/stats/trends?from=2026-11-01T00:00:00Z&to=2026-11-30T00:00:00Z&bucket=day",
        "/v1/rules",
        "/v1/alerts",
        "/v1/silences",
        "/v1/decisions/tx-tenant-a",
    ],
)
def test_lists_show_only_the_tokens_tenants(env: Env, url: str) -> None:
    response = env.client.get(url, headers=bearer(env.token("analyst")))
    assert response.status_code == 200, response.text
    assert not _leaks(response.text)
    admin = env.client.get(url.replace("tenant-a", "tenant-b"), headers=bearer(env.token("admin", ())))
    assert admin.status_code == 200
    if not url.startswith(("/v1/metrics/precision", "/v1/stats/trends")):  # aggregates name no tenant
        assert "tenant-b" in admin.text, "the admin sees every tenant (so the filter above was real)"


def test_a_token_with_no_tenants_sees_nothing(env: Env) -> None:
    token = env.token("viewer", ())
    for url in ("/v1/anomalies", "/v1/cases", "/v1/alerts", "/v1/silences"):
        response = env.client.get(url, headers=bearer(token))
        assert response.status_code == 200
        assert response.json()["data"] == []
    assert env.client.get(env.ids.url("/v1/anomalies/{anomaly_a}"), headers=bearer(token)).status_code == 404
