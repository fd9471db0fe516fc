"""The OpenAPI document is complete enough to generate a client from (no stack needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from api import ApiPorts, create_app
from core.errors import ConfigError
from core.settings import load_settings


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = load_settings(environment="test", web_dist_dir=tmp_path_factory.mktemp("empty") / "dist")
    app: FastAPI = create_app(settings, ports=ApiPorts())  # builds no connection until a request needs one
    return app.openapi()


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in spec["paths"].items() for method, op in item.items()]


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return resolved


def test_every_operation_has_a_summary_tag_and_documented_errors(spec: dict[str, Any]) -> None:
    assert len(_operations(spec)) >= 38
    for method, path, operation in _operations(spec):
        assert operation.get("summary"), (method, path)
        assert operation.get("tags"), (method, path)
        responses = operation["responses"]
        assert any(code.startswith("2") for code in responses), (method, path)
        for code, response in responses.items():
            if code.startswith("4") or (code.startswith("5") and path != "/readyz"):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, code)
        if operation.get("security"):
            assert {"401", "429"} <= set(responses), (method, path)
        has_input = any(p["in"] in ("query", "path") for p in operation.get("parameters", [])) or (
            "requestBody" in operation
        )
        if has_input and path not in ("/v1/auth/token",):
            assert "422" in responses, (method, path)


def test_fastapis_own_validation_schema_never_leaks(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert "HTTPValidationError" not in str(spec)


def test_request_and_response_bodies_carry_examples(spec: dict[str, Any]) -> None:
    missing = []
    for method, path, operation in _operations(spec):
        body = operation.get("requestBody")
        if body is not None and "application/json" in body["content"]:
            schema = _resolve(spec, body["content"]["application/json"]["schema"])
            if not schema.get("examples"):
                missing.append(f"{method} {path} request")
    assert missing == []
    for name in (
        "AnomalySummary",
        "AnomalyDetail",
        "CaseDetail",
        "ScoreResponse",
        "DecisionView",
        "IngestResult",
        "Summary",
        "Trends",
        "PrecisionReport",
        "RuleView",
        "SilenceView",
        "ErrorBody",
        "TokenResponse",
    ):
        assert spec["components"]["schemas"][name].get("examples"), name


def test_the_submission_schema_is_the_contract_with_an_optional_tenant(spec: dict[str, Any]) -> None:
    submission = spec["components"]["schemas"]["TransactionSubmission"]
    assert "tenant_id" not in submission["required"]
    assert {"transaction_id", "occurred_at", "account_id", "amount", "currency"} <= set(submission["required"])
    assert "ingested_at" not in submission["properties"]
    assert submission["additionalProperties"] is False
    assert "EUR" in submission["properties"]["currency"]["enum"]
    batch = spec["components"]["schemas"]["TransactionBatch"]
    assert batch["properties"]["transactions"]["maxItems"] == 1000


def test_decision_thresholds_must_be_ordered() -> None:
    with pytest.raises(ConfigError, match="decision_review_threshold"):
        load_settings(decision_review_threshold=90, decision_decline_threshold=80)


def test_oidc_needs_both_issuer_and_jwks_url(tmp_path: Path) -> None:
    settings = load_settings(environment="test", oidc_issuer="https://idp.example", web_dist_dir=tmp_path)
    with pytest.raises(ConfigError, match="VIGIL_OIDC_JWKS_URL"):
        create_app(settings, ports=ApiPorts())
