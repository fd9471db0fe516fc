"""HTTP ingestion on the real broker: 202 only after Kafka confirmed delivery; 403/413/415/422 otherwise."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from api import ApiPorts, create_app
from core.kafka import header_pairs, read_all
from core.settings import Settings
from core.topics import TX_RAW
from tests.api.conftest import TENANT_A, TENANT_B, TokenFactory, bearer, context

pytestmark = pytest.mark.integration


def _tx(i: int, **overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "transaction_id": f"tx-http-{i}",
        "occurred_at": "2026-11-24T10:15:02Z",
        "account_id": f"acc-{i % 3}",
        "merchant_id": "m-1",
        "merchant_category": "5411",
        "amount": "12.50",
        "currency": "EUR",
        "channel": "ecommerce",
        "country": "DE",
    }
    item.update(overrides)
    return item


def _raw(settings: Settings) -> list[Any]:
    return read_all(settings, settings.topic(TX_RAW), timeout=10.0)


def test_one_transaction_is_accepted_after_delivery_with_the_tokens_tenant(
    client: TestClient, topics: Settings, token_for: TokenFactory
) -> None:
    token = token_for("ingest", (TENANT_A,), principal_id="pos-1", kind="client")
    response = client.post("/v1/transactions", json=_tx(1), headers=bearer(token))
    assert response.status_code == 202, response.text
    assert response.json() == {
        "accepted": 1,
        "results": [{"index": 0, "transaction_id": "tx-http-1", "status": "accepted"}],
    }
    messages = _raw(topics)
    assert len(messages) == 1
    message = messages[0]
    assert message.key() == b"acc-1"
    value = json.loads(message.value())
    assert value["tenant_id"] == TENANT_A and value["transaction_id"] == "tx-http-1"
    assert value["amount"] == "12.50" and value.get("ingested_at") is None
    headers = dict(header_pairs(message))
    assert headers["vigil.source"] == b"http" and headers["vigil.principal"] == b"pos-1"


def test_a_valid_batch_is_accepted_whole(client: TestClient, topics: Settings, token_for: TokenFactory) -> None:
    token = token_for("ingest", (TENANT_A,), kind="client")
    items = [_tx(i, tenant_id=TENANT_A if i % 2 else None) for i in range(250)]
    response = client.post("/v1/transactions:batch", json={"transactions": items}, headers=bearer(token))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 250
    assert [r["transaction_id"] for r in body["results"]] == [f"tx-http-{i}" for i in range(250)]
    messages = _raw(topics)
    assert sorted(json.loads(m.value())["transaction_id"] for m in messages) == sorted(
        f"tx-http-{i}" for i in range(250)
    )
    assert {m.key() for m in messages} == {b"acc-0", b"acc-1", b"acc-2"}


def test_one_invalid_item_refuses_the_batch_with_every_items_errors(
    client: TestClient, topics: Settings, token_for: TokenFactory
) -> None:
    token = token_for("ingest", (TENANT_A,), kind="client")
    items = [
        _tx(0),
        _tx(1, currency="XYZ"),
        _tx(2, tenant_id=TENANT_A),
        _tx(3, amount="1.234"),  # EUR has two decimals
        _tx(4, lat=10.0),  # lat without lon
        [1, 2],
    ]
    response = client.post("/v1/transactions:batch", json={"transactions": items}, headers=bearer(token))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["message"].startswith("4 of 6 transactions are invalid")
    by_item: dict[int, list[dict[str, Any]]] = {}
    for detail in error["details"]:
        assert detail["loc"][:2] == ["body", "transactions"]
        by_item.setdefault(detail["loc"][2], []).append(detail)
    assert sorted(by_item) == [1, 3, 4, 5]
    assert by_item[1][0]["loc"] == ["body", "transactions", 1, "currency"] and "XYZ" in by_item[1][0]["message"]
    assert "decimals" in by_item[3][0]["message"]
    assert _raw(topics) == []


def test_invalid_bodies_are_422_with_field_locations(
    client: TestClient, topics: Settings, token_for: TokenFactory
) -> None:
    token = token_for("ingest", (TENANT_A,), kind="client")
    batch = client.post(
        "/v1/transactions:batch",
        json={"transactions": [_tx(0, amount=-1), _tx(1, country="XX")]},
        headers=bearer(token),
    )
    assert batch.status_code == 422
    locs = [d["loc"] for d in batch.json()["error"]["details"]]
    assert locs == [["body", "transactions", 0, "amount"], ["body", "transactions", 1, "country"]]
    single = client.post("/v1/transactions", json=_tx(0, merchant_category="54"), headers=bearer(token))
    assert single.status_code == 422
    assert single.json()["error"]["details"][0]["loc"] == ["body", "merchant_category"]
    stamped = client.post("/v1/transactions", json=_tx(0, ingested_at="2026-11-24T10:15:02Z"), headers=bearer(token))
    assert stamped.status_code == 422 and stamped.json()["error"]["details"][0]["loc"] == ["body", "ingested_at"]
    assert client.post("/v1/transactions:batch", json={"transactions": []}, headers=bearer(token)).status_code == 422
    too_many = {"transactions": [_tx(i) for i in range(1001)]}
    assert client.post("/v1/transactions:batch", json=too_many, headers=bearer(token)).status_code == 422
    assert client.post("/v1/transactions:batch", json=[_tx(0)], headers=bearer(token)).status_code == 422
    assert _raw(topics) == []


def test_tenants_outside_the_token_are_403_for_the_whole_request(
    client: TestClient, topics: Settings, token_for: TokenFactory
) -> None:
    token = token_for("ingest", (TENANT_A,), kind="client")
    batch = {"transactions": [_tx(0), _tx(1, tenant_id=TENANT_B)]}
    response = client.post("/v1/transactions:batch", json=batch, headers=bearer(token))
    assert response.status_code == 403 and TENANT_B in response.json()["error"]["message"]
    two_tenants = token_for("ingest", (TENANT_A, TENANT_B), kind="client")
    missing = client.post("/v1/transactions", json=_tx(2), headers=bearer(two_tenants))
    assert missing.status_code == 422
    assert missing.json()["error"]["details"][0]["loc"] == ["body", "tenant_id"]
    named = client.post("/v1/transactions", json=_tx(3, tenant_id=TENANT_B), headers=bearer(two_tenants))
    assert named.status_code == 202
    assert [json.loads(m.value())["tenant_id"] for m in _raw(topics)] == [TENANT_B]


def test_bodies_over_the_limits_are_413_and_wrong_media_types_415(
    client: TestClient, api_settings: Settings, token_for: TokenFactory
) -> None:
    token = token_for("ingest", (TENANT_A,), kind="client")
    headers = {**bearer(token), "Content-Type": "application/json"}
    single_limit = api_settings.max_message_bytes
    big = json.dumps(_tx(0, attributes={"note": "x" * 200})) + " " * single_limit
    declared = client.post("/v1/transactions", content=big, headers=headers)
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while streaming
        for _ in range(api_settings.api_max_batch_bytes // 65536 + 2):
            yield b" " * 65536

    streamed = client.post("/v1/transactions:batch", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    other = client.post("/v1/anomalies", content=b"x" * (api_settings.api_max_body_bytes + 1), headers=headers)
    assert other.status_code == 413
    text = client.post("/v1/transactions", content=b"{}", headers={**bearer(token), "Content-Type": "text/plain"})
    assert text.status_code == 415
    broken = client.post("/v1/transactions", content=b"{not json", headers=headers)
    assert broken.status_code == 422 and broken.json()["error"]["details"][0]["type"] == "json_invalid"


def test_an_unreachable_broker_is_503_not_202(api_settings: Settings, db: Engine, token_for: TokenFactory) -> None:
    unreachable = api_settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"})
    app = create_app(unreachable, ports=ApiPorts(), engine=db)
    from api import Principal, Role

    token = context(app).issuer.issue(
        Principal(principal_id="pos-x", kind="client", roles=frozenset({Role.INGEST}), tenants=frozenset({TENANT_A}))
    )
    token_for("ingest", principal_id="pos-x", kind="client")
    with TestClient(app) as client:
        response = client.post("/v1/transactions", json=_tx(0), headers=bearer(token))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "delivery_failed"
    assert response.headers["Retry-After"] == "1"
