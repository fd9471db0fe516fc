"""Fixtures for the API: RS256 keys, an app on the session database, principals and seeded rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from sqlalchemy import Engine, insert
from starlette.testclient import TestClient

from api import ApiPorts, Principal, Role, create_app
from api.context import AppContext
from core.contracts import anomaly_id_for
from core.schema import anomalies, cases, principals, transactions
from core.settings import Settings

TENANT_A = "tenant-a"
TENANT_B = "tenant-b"


@dataclass(frozen=True)
class KeyPair:
    private_file: Path
    public_file: Path
    private_pem: str
    public_pem: str


def _keypair(directory: Path, name: str) -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    private_file = directory / f"{name}.pem"
    public_file = directory / f"{name}.pub.pem"
    private_file.write_text(private_pem)
    public_file.write_text(public_pem)
    return KeyPair(private_file, public_file, private_pem, public_pem)


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return _keypair(tmp_path_factory.mktemp("keys"), "current")


@pytest.fixture(scope="session")
def retired_key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return _keypair(tmp_path_factory.mktemp("keys"), "retired")


@pytest.fixture
def api_settings(settings: Settings, signing_key: KeyPair, retired_key: KeyPair, tmp_path: Path) -> Settings:
    """RS256 signing with one retired key still accepted; limits high enough not to interfere."""
    return settings.model_copy(
        update={
            "jwt_private_key_file": signing_key.private_file,
            "jwt_previous_public_key_files": [retired_key.public_file],
            "api_rate_limit_per_second": 10_000.0,
            "api_rate_limit_burst": 10_000,
            "api_login_attempts_per_minute": 10_000,
            "web_dist_dir": tmp_path / "no-dashboard",
        }
    )


@pytest.fixture
def ports() -> ApiPorts:
    return ApiPorts()


@pytest.fixture
def app(api_settings: Settings, db: Engine, ports: ApiPorts) -> FastAPI:
    return create_app(api_settings, ports=ports, engine=db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=True) as test_client:
        yield test_client


def context(app: FastAPI) -> AppContext:
    ctx: AppContext = app.state.vigil
    return ctx


TokenFactory = Callable[..., str]


@pytest.fixture
def token_for(app: FastAPI, db: Engine) -> TokenFactory:
    """Create a principal row (no password needed) and return a valid token for it."""

    def make(
        role: str, tenants: tuple[str, ...] = (TENANT_A,), *, principal_id: str | None = None, kind: str = "user"
    ) -> str:
        principal_id = principal_id or f"{role}-{uuid.uuid4().hex[:8]}"
        with db.begin() as connection:
            connection.execute(
                insert(principals).values(
                    principal_id=principal_id,
                    kind=kind,
                    secret_hash="unused",
                    roles=[role],
                    tenants=list(tenants),
                )
            )
        principal = Principal(
            principal_id=principal_id,
            kind="client" if kind == "client" else "user",
            roles=frozenset({Role(role)}),
            tenants=frozenset(tenants),
        )
        return context(app).issuer.issue(principal)

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- seeded rows --------------------------------------------------------------------------------

BASE_TIME = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def transaction_row(tenant_id: str, transaction_id: str, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "transaction_id": transaction_id,
        "occurred_at": BASE_TIME,
        "tenant_id": tenant_id,
        "account_id": f"acc-{tenant_id}",
        "card_id": f"card-{tenant_id}",
        "merchant_id": f"m-{tenant_id}",
        "merchant_category": "5411",
        "amount": Decimal("42.50"),
        "currency": "EUR",
        "channel": "ecommerce",
        "country": "DE",
        "device_id": f"dev-{tenant_id}",
        "ip": "10.0.0.1",
        "lat": None,
        "lon": None,
        "attributes": {},
        "ingested_at": BASE_TIME,
    }
    row.update(overrides)
    return row


def anomaly_row(tenant_id: str, transaction_id: str, **overrides: Any) -> dict[str, Any]:
    detector_name = overrides.pop("detector_name", "amount_zscore")
    detector_version = overrides.pop("detector_version", "1")
    row: dict[str, Any] = {
        "anomaly_id": anomaly_id_for(
            tenant_id=tenant_id,
            transaction_id=transaction_id,
            detector_name=detector_name,
            detector_version=detector_version,
        ),
        "event_time": BASE_TIME,
        "detected_at": BASE_TIME + timedelta(seconds=1),
        "tenant_id": tenant_id,
        "transaction_id": transaction_id,
        "entity_type": "account",
        "entity_id": f"acc-{tenant_id}",
        "detector_family": "statistical",
        "detector_name": detector_name,
        "detector_version": detector_version,
        "score_raw": 4.2,
        "score": 85.0,
        "severity": "critical",
        "reasons": [{"feature": "amount", "value": 999.0, "baseline": 40.0, "text": f"secret-{tenant_id} amount"}],
        "amount": Decimal("999.00"),
        "currency": "EUR",
        "status": "open",
    }
    row.update(overrides)
    return row


def case_row(tenant_id: str, transaction_id: str, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "case_id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "transaction_id": transaction_id,
        "entity_type": "account",
        "entity_id": f"acc-{tenant_id}",
        "event_time": BASE_TIME,
        "status": "open",
        "max_severity": "critical",
        "max_score": 85.0,
        "anomaly_count": 1,
    }
    row.update(overrides)
    return row


@dataclass(frozen=True)
class Seeded:
    """One transaction, anomaly and case per tenant (A and B)."""

    transactions: dict[str, dict[str, Any]]
    anomalies: dict[str, dict[str, Any]]
    cases: dict[str, dict[str, Any]]


@pytest.fixture
def seeded(db: Engine) -> Seeded:
    txs = {t: transaction_row(t, f"tx-{t}") for t in (TENANT_A, TENANT_B)}
    found = {t: anomaly_row(t, f"tx-{t}") for t in (TENANT_A, TENANT_B)}
    opened = {t: case_row(t, f"tx-{t}") for t in (TENANT_A, TENANT_B)}
    with db.begin() as connection:
        connection.execute(insert(transactions), list(txs.values()))
        connection.execute(insert(anomalies), list(found.values()))
        connection.execute(insert(cases), list(opened.values()))
    return Seeded(transactions=txs, anomalies=found, cases=opened)
