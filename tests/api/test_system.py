"""`GET /v1/system/status` against the real Kafka, PostgreSQL and a real ops server (core.metrics.serve_ops)."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from sqlalchemy import Engine, insert
from starlette.testclient import TestClient

from api import ApiPorts, create_app
from api.system import ConsumerSpec
from core import metrics
from core.kafka import client_config
from core.schema import anomalies
from core.settings import Settings
from core.topics import TX_DLQ, TX_VALID
from tests.api.conftest import TENANT_A, TENANT_B, TokenFactory, anomaly_row, bearer

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def ops_server() -> Iterator[str]:
    """A real ops endpoint of a 'detect-ml' whose model is degraded."""
    health = metrics.Health()
    health.add_check("database", lambda: True)
    health.add_check("model:vigil-broken", lambda: False)
    port = _free_port()
    server = metrics.serve_ops(health=health, port=port, host="127.0.0.1")
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


def _produce(settings: Settings, topic: str, count: int) -> None:
    producer = Producer(client_config(settings))
    for i in range(count):
        producer.produce(topic, value=b"{}", key=str(i).encode(), partition=0)
    assert producer.flush(10) == 0


@pytest.fixture
def group_member(topics: Settings) -> Iterator[tuple[str, Consumer]]:
    """A live member of a consumer group on tx.valid that committed offset 4 of partition 0."""
    group = f"{topics.kafka_topic_prefix}status-test"
    consumer = Consumer(client_config(topics, **{"group.id": group, "enable.auto.commit": False}))
    consumer.subscribe([topics.topic(TX_VALID)])
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.2)
    assert consumer.assignment(), "the consumer never joined its group"
    consumer.commit(offsets=[TopicPartition(topics.topic(TX_VALID), 0, 4)], asynchronous=False)
    yield group, consumer
    consumer.close()


def _status_app(settings: Settings, db: Engine, consumers: tuple[ConsumerSpec, ...], ops: dict[str, str]) -> Any:
    configured = settings.model_copy(update={"status_ops_targets": ops, "status_probe_timeout_seconds": 0.5})
    return create_app(configured, ports=ApiPorts(consumers=consumers), engine=db)


def test_status_reports_lag_dlq_depth_throughput_services_and_degraded_detectors(
    api_settings: Settings,
    topics: Settings,
    db: Engine,
    token_for: TokenFactory,
    ops_server: str,
    group_member: tuple[str, Consumer],
) -> None:
    settings = api_settings.model_copy(update={"kafka_topic_prefix": topics.kafka_topic_prefix})
    group, member = group_member
    valid, dlq = settings.topic(TX_VALID), settings.topic(TX_DLQ)
    _produce(settings, valid, 10)
    _produce(settings, dlq, 3)
    with db.begin() as connection:
        now = datetime.now(UTC)
        connection.execute(
            insert(anomalies),
            [
                anomaly_row(TENANT_A, "tx-recent-a", detected_at=now),
                anomaly_row(TENANT_B, "tx-recent-b", detected_at=now),
            ],
        )
    consumers = (
        ConsumerSpec("detect-ml", group, (valid,)),
        ConsumerSpec("alerting", f"{settings.kafka_topic_prefix}nobody-{uuid.uuid4().hex[:6]}", (valid,)),
    )
    closed = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    app = _status_app(settings, db, consumers, {"detect-ml": ops_server, "alerting": closed})
    with TestClient(app) as client:
        analyst = bearer(token_for("analyst", (TENANT_A,)))
        first = client.get("/v1/system/status", headers=analyst)
        assert first.status_code == 200, first.text
        body = first.json()
        member.poll(0.1)  # stay in the group
        assert body["kafka_reachable"] is True
        assert body["dlq"] == {"topic": dlq, "depth": 3}
        services = {s["name"]: s for s in body["services"]}
        ml = services["detect-ml"]
        assert ml["status"] == "not_ready" and ml["checks"] == {"database": True, "model:vigil-broken": False}
        assert ml["consumer"]["lag"] == 6 and ml["consumer"]["members"] == 1 and ml["consumer"]["state"] == "stable"
        # Unreachable ops endpoint and nobody in the group: down, with every retained message as lag.
        alerting = services["alerting"]
        assert alerting["status"] == "down" and alerting["consumer"]["lag"] == 10 and alerting["checks"] == {}
        assert services["api"]["status"] == "ready"
        assert body["degraded_detectors"] == ["vigil-broken"]
        # Tenant B's anomaly is not counted for an analyst of tenant A.
        assert body["throughput"]["anomalies_last_minute"] == 1
        # Cached: an immediate second call is the same answer.
        assert client.get("/v1/system/status", headers=analyst).json()["generated_at"] == body["generated_at"]

        _produce(settings, valid, 20)
        time.sleep(2.2)
        later = client.get("/v1/system/status", headers=bearer(token_for("admin", ()))).json()
        assert later["throughput"]["anomalies_last_minute"] == 2  # admin: every tenant
        rate = later["throughput"]["transactions_per_second"]
        assert rate is not None and 3 < rate < 20, rate  # 20 messages over ~2.2 s
        assert {s["name"]: s for s in later["services"]}["detect-ml"]["consumer"]["lag"] == 26


def test_only_admins_and_analysts_read_the_system_status(
    api_settings: Settings, db: Engine, token_for: TokenFactory
) -> None:
    app = _status_app(api_settings, db, (), {})
    with TestClient(app) as client:
        assert client.get("/v1/system/status").status_code == 401
        for role, expected in (("viewer", 403), ("ingest", 403), ("analyst", 200), ("admin", 200)):
            token = token_for(role, () if role == "admin" else (TENANT_A,))
            response = client.get("/v1/system/status", headers=bearer(token))
            assert response.status_code == expected, (role, response.text)


def test_kafka_unreachable_is_reported_not_raised(api_settings: Settings, db: Engine, token_for: TokenFactory) -> None:
    settings = api_settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{_free_port()}"})
    app = _status_app(settings, db, (ConsumerSpec("detect-rules", "g", ("t",)),), {})
    with TestClient(app) as client:
        response = client.get("/v1/system/status", headers=bearer(token_for("admin", ())))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kafka_reachable"] is False and body["dlq"]["depth"] is None
    assert body["services"][0] == {
        "name": "detect-rules",
        "status": "unknown",
        "checks": {},
        "consumer": {"group": "g", "topics": ["t"], "state": "unknown", "members": None, "lag": None, "partitions": 0},
    }
