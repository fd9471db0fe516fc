"""Acceptance: the alerting service end to end on the real Kafka and PostgreSQL, with a local HTTP
server standing in for Slack and a real SMTP server (aiosmtpd, STARTTLS + AUTH)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, func, select

from alerting import create_silence, expire_silence
from alerting.config import AlertingConfig, build_config
from alerting.service import run_alerting
from core.contracts import Anomaly
from core.kafka import DeliveringProducer, StopFlag
from core.schema import alert_groups, alerts, notifications
from core.settings import Settings
from core.topics import ANOMALIES
from tests.alerting.conftest import SMTP_PASSWORD, SMTP_USER, FakeHttp, SmtpServer
from tests.alerting.conftest import make_anomaly as make_anomaly_at

pytestmark = pytest.mark.integration

GROUP_WAIT = 2.0
GROUP_INTERVAL = 3.0


def make_anomaly(index: int, **fields: Any) -> Anomaly:
    """An anomaly detected just now: the service runs on the real clock, and old ones are stale."""
    return make_anomaly_at(index, detected_at=datetime.now(UTC), **fields)


def produce(settings: Settings, anomalies: Sequence[Anomaly]) -> None:
    producer = DeliveringProducer(settings, service="test")
    topic = settings.topic(ANOMALIES)
    for anomaly in anomalies:
        producer.produce(topic, anomaly.model_dump_json().encode(), key=anomaly.transaction_id)
    producer.flush_or_raise()


def config_document(*, slack_url_env: str = "VIGIL_TEST_SLACK_URL", smtp: SmtpServer | None) -> dict[str, Any]:
    receivers: list[dict[str, Any]] = [{"name": "slack", "type": "slack_webhook", "webhook_url_env": slack_url_env}]
    routes: list[dict[str, Any]] = [
        {"id": "critical-slack", "matchers": ['severity="critical"'], "receiver": "slack", "continue": True}
    ]
    if smtp is not None:
        receivers.append(
            {
                "name": "email",
                "type": "email",
                "host": smtp.host,
                "port": smtp.port,
                "starttls": True,
                "ca_file": str(smtp.ca_file),
                "username": SMTP_USER,
                "password_env": "VIGIL_TEST_SMTP_PASSWORD",
                "sender": "vigil@example.com",
                "to": ["oncall@example.com"],
            }
        )
        routes.append({"id": "critical-email", "matchers": ['severity="critical"'], "receiver": "email"})
    return {
        "defaults": {"group_wait": GROUP_WAIT, "group_interval": GROUP_INTERVAL, "repeat_interval": "4h"},
        "routes": routes,
        "receivers": receivers,
        "system": {"enabled": False},
        "tick_interval": 0.2,
        "delivery": {"backoff_initial": 0.5},
    }


def make_config(fake_http: FakeHttp, smtp: SmtpServer | None) -> AlertingConfig:
    environ = {"VIGIL_TEST_SLACK_URL": f"{fake_http.url}/services/T0/B0/X", "VIGIL_TEST_SMTP_PASSWORD": SMTP_PASSWORD}
    return build_config(config_document(smtp=smtp), environ=environ)


class Running:
    """`run_alerting` on a thread, stopped the way SIGTERM stops it."""

    def __init__(self, settings: Settings, config: AlertingConfig) -> None:
        self.stop = StopFlag()
        self.thread = threading.Thread(
            target=run_alerting, kwargs={"settings": settings, "config": config, "stop": self.stop}, daemon=True
        )
        self.started = time.monotonic()
        self.thread.start()

    def close(self) -> float:
        began = time.monotonic()
        self.stop.set()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()
        return time.monotonic() - began


@pytest.fixture
def service_settings(topics: Settings, db: Engine) -> Settings:
    return topics.model_copy(update={"batch_timeout_ms": 100})


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def test_burst_is_one_message_per_receiver_within_group_wait_and_a_replay_sends_nothing(
    service_settings: Settings, db: Engine, fake_http: FakeHttp, smtp_server: SmtpServer
) -> None:
    burst = [make_anomaly(i) for i in range(1000)]
    produce(service_settings, burst)
    running = Running(service_settings, make_config(fake_http, smtp_server))
    try:
        requests = fake_http.wait_for(1, timeout=30)
        emails = smtp_server.wait_for(1, timeout=10)
        time.sleep(GROUP_INTERVAL + 1)  # anything else would have been sent by now
        assert len(fake_http.requests) == 1 and len(smtp_server.messages) == 1

        with db.connect() as connection:
            first_seen = connection.execute(select(func.min(alerts.c.received_at))).scalar_one()
            rows = list(connection.execute(select(notifications)))
        assert sorted((r.receiver, r.status, r.anomaly_count, r.attempts) for r in rows) == [
            ("email", "sent", 1000, 1),
            ("slack", "sent", 1000, 1),
        ]
        for row in rows:
            waited = (row.sent_at - first_seen).total_seconds()
            assert GROUP_WAIT <= waited < GROUP_WAIT + 2.5, f"{row.receiver} sent {waited:.2f}s after the burst"

        payload = requests[0].json()
        assert requests[0].path == "/services/T0/B0/X"
        assert payload["blocks"][0]["text"]["text"] == "[CRITICAL] 1,000 anomalies for merchant m-1 (tenant acme)"
        email = emails[0]
        assert email["Subject"] == "[CRITICAL] 1,000 anomalies for merchant m-1 (tenant acme)"
        assert {part.get_content_type() for part in email.iter_parts()} == {"text/plain", "text/html"}
        assert smtp_server.tls_sessions == 1  # STARTTLS was used, and AUTH succeeded over it

        produce(service_settings, burst)  # the detector framework replays a batch
        deadline = time.monotonic() + 20
        while _lag(service_settings) > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _lag(service_settings) == 0  # the replay was consumed and committed...
        assert count(db, alerts) == 1000  # ...and recognised
        time.sleep(GROUP_WAIT + GROUP_INTERVAL + 1)
        assert len(fake_http.requests) == 1 and len(smtp_server.messages) == 1
        assert count(db, notifications) == 2
    finally:
        assert running.close() < 10


def _lag(settings: Settings) -> int:
    """Messages of the anomalies topic the alerting group has not committed yet."""
    from confluent_kafka import Consumer, TopicPartition

    topic = settings.topic(ANOMALIES)
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"{settings.kafka_topic_prefix}vigil-alerting"}
    )
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.kafka_partitions)]
        committed = consumer.committed(partitions, timeout=10)
        ends = [consumer.get_watermark_offsets(p, timeout=10)[1] for p in partitions]
        return sum(end - max(c.offset, 0) for c, end in zip(committed, ends, strict=True))
    finally:
        consumer.close()


def test_slack_429_is_retried_after_retry_after_and_delivered_once(
    service_settings: Settings, db: Engine, fake_http: FakeHttp
) -> None:
    fake_http.script = [(429, {"Retry-After": "2", "Content-Type": "text/plain"}, b"rate_limited")]
    produce(service_settings, [make_anomaly(i) for i in range(5)])
    running = Running(service_settings, make_config(fake_http, None))
    try:
        requests = fake_http.wait_for(2, timeout=30)
        time.sleep(2)
        assert [r.headers["x-answered"] for r in fake_http.requests] == ["429", "200"]
        assert requests[1].at - requests[0].at >= 2.0
        assert requests[0].body == requests[1].body  # the same message, not a re-render
        with db.connect() as connection:
            row = connection.execute(select(notifications)).one()
        assert (row.status, row.attempts, row.anomaly_count) == ("sent", 2, 5)
    finally:
        running.close()


def test_silence_suppresses_matching_alerts_and_expiry_restores_them(
    service_settings: Settings, db: Engine, fake_http: FakeHttp
) -> None:
    now = datetime.now(UTC)
    silence = create_silence(
        engine=db,
        matchers=['entity_id="m-1"'],
        starts_at=now,
        ends_at=now + timedelta(hours=1),
        created_by="ana",
        comment="load test at merchant m-1",
        now=now,
        tenant_id="acme",
    )
    produce(service_settings, [make_anomaly(i) for i in range(10)])
    produce(service_settings, [make_anomaly(100 + i, entity_id="m-2") for i in range(3)])
    running = Running(service_settings, make_config(fake_http, None))
    try:
        fake_http.wait_for(1, timeout=30)
        time.sleep(GROUP_INTERVAL + 1)
        titles = [r.json()["text"] for r in fake_http.requests]
        assert titles == ["[CRITICAL] 3 anomalies for merchant m-2 (tenant acme)"]

        expire_silence(engine=db, silence_id=silence.silence_id, expired_by="ana", now=datetime.now(UTC))
        fake_http.wait_for(2, timeout=GROUP_INTERVAL + 5)
        titles = [r.json()["text"] for r in fake_http.requests]
        assert titles[1:] == ["[CRITICAL] 10 anomalies for merchant m-1 (tenant acme)"]
    finally:
        running.close()


def _start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    vigil = Path(sys.executable).with_name("vigil")
    return subprocess.Popen([str(vigil), "run", "alerting"], env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE)


@pytest.fixture
def process_env(service_settings: Settings, tmp_path: Path, fake_http: FakeHttp) -> Iterator[dict[str, str]]:
    document = config_document(slack_url_env="VIGIL_ALERTING_SLACK_WEBHOOK_URL", smtp=None)
    document["defaults"]["group_wait"] = 6  # long enough to kill the process mid-group
    path = tmp_path / "alerting.yaml"
    path.write_text(yaml.safe_dump(document))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(
        {
            "VIGIL_ENVIRONMENT": "test",
            "VIGIL_DATABASE_URL": service_settings.database_url,
            "VIGIL_KAFKA_BOOTSTRAP": service_settings.kafka_bootstrap,
            "VIGIL_KAFKA_TOPIC_PREFIX": service_settings.kafka_topic_prefix,
            "VIGIL_BATCH_TIMEOUT_MS": "100",
            "VIGIL_LOG_FORMAT": "text",
            "VIGIL_ALERTING_CONFIG_FILE": str(path),
            "VIGIL_ALERTING_SLACK_WEBHOOK_URL": f"{fake_http.url}/services/T0/B0/X",
        }
    )
    yield env


def test_kill_9_mid_group_then_restart_sends_exactly_one_notification(
    service_settings: Settings, db: Engine, fake_http: FakeHttp, process_env: dict[str, str]
) -> None:
    produce(service_settings, [make_anomaly(i) for i in range(300)])
    first = _start(process_env)
    try:
        deadline = time.monotonic() + 30
        while (count(db, alerts) < 300 or count(db, alert_groups) < 1) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert count(db, alerts) == 300
    finally:
        first.send_signal(signal.SIGKILL)  # mid-group: group_wait (6 s) has not elapsed
        first.wait(timeout=10)
    assert fake_http.requests == [] and count(db, notifications) == 0

    second = _start(process_env)
    try:
        fake_http.wait_for(1, timeout=30)
        time.sleep(GROUP_INTERVAL + 1)
        assert len(fake_http.requests) == 1
        assert fake_http.requests[0].json()["text"] == "[CRITICAL] 300 anomalies for merchant m-1 (tenant acme)"
        with db.connect() as connection:
            rows = list(connection.execute(select(notifications)))
        assert [(r.status, r.anomaly_count) for r in rows] == [("sent", 300)]
    finally:
        began = time.monotonic()
        second.send_signal(signal.SIGTERM)
        code = second.wait(timeout=15)
        stopped_in = time.monotonic() - began
    assert code == 0, second.stderr.read().decode()[-2000:] if second.stderr else ""
    assert stopped_in < 10
