"""Grouping, dedup, silences, inhibition and dispatch against the real PostgreSQL, on a fake clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from alerting import AlertingService, create_silence, expire_silence
from alerting.channels import DeliveryResult
from alerting.config import AlertingConfig, build_config
from alerting.model import NotificationContent
from core.contracts import EntityType, Severity
from core.schema import alert_groups, notifications
from tests.alerting.conftest import T0, FakeClock, make_anomaly

pytestmark = pytest.mark.integration


class RecordingChannel:
    """Stands in for a SaaS receiver: records messages, answers from a script."""

    def __init__(self, name: str, script: list[DeliveryResult] | None = None) -> None:
        self.name = name
        self.sent: list[NotificationContent] = []
        self.attempts = 0
        self.script = list(script or [])

    def send(self, content: NotificationContent) -> DeliveryResult:
        self.attempts += 1
        result = self.script.pop(0) if self.script else DeliveryResult.sent()
        if result.status == "sent":
            self.sent.append(content)
        return result

    def close(self) -> None:
        return None


def make_config(**overrides: Any) -> AlertingConfig:
    raw: dict[str, Any] = {
        "defaults": {"group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h"},
        "routes": [
            {"id": "crit-slack", "matchers": ['severity="critical"'], "receiver": "slack", "continue": True},
            {"id": "crit-email", "matchers": ['severity="critical"'], "receiver": "email"},
            {"id": "warn", "matchers": ['severity="warning"'], "receiver": "email"},
            {"id": "info", "matchers": ['severity="info"'], "receiver": None},
        ],
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["tenant_id", "entity_type", "entity_id"],
            }
        ],
        "receivers": [
            {"name": "slack", "type": "slack_webhook", "webhook_url_env": "VIGIL_TEST_SLACK_URL"},
            {
                "name": "email",
                "type": "email",
                "host": "127.0.0.1",
                "sender": "vigil@example.com",
                "to": ["oncall@example.com"],
            },
        ],
        "system": {"enabled": False},
        "delivery": {"max_attempts": 3},
    }
    raw.update(overrides)
    return build_config(raw, environ={"VIGIL_TEST_SLACK_URL": "http://127.0.0.1:9/unused"})


class Harness:
    def __init__(self, engine: Engine, config: AlertingConfig, clock: FakeClock) -> None:
        self.clock = clock
        self.slack = RecordingChannel("slack")
        self.email = RecordingChannel("email")
        self.service = AlertingService(
            engine=engine,
            config=config,
            channels={"slack": self.slack, "email": self.email},
            public_url="https://vigil.example.com",
            clock=clock,
        )
        self.engine = engine

    def run(self) -> None:
        self.service.flush()
        self.service.dispatch()

    def notification_rows(self) -> list[Any]:
        with self.engine.connect() as connection:
            return list(connection.execute(select(notifications).order_by(notifications.c.notification_id)))


@pytest.fixture
def harness(db: Engine) -> Iterator[Harness]:
    yield Harness(db, make_config(), FakeClock())


def test_burst_of_1000_becomes_one_message_per_receiver_after_group_wait(harness: Harness) -> None:
    burst = [make_anomaly(i) for i in range(1000)]
    result = harness.service.ingest_anomalies(burst)
    assert (result.new, result.routed) == (1000, 2000)

    harness.clock.advance(29)
    harness.run()
    assert harness.slack.sent == [] and harness.email.sent == []

    harness.clock.advance(1)
    harness.run()
    assert len(harness.slack.sent) == 1 and len(harness.email.sent) == 1
    message = harness.slack.sent[0]
    assert message.alert_count == 1000
    assert message.title == "[CRITICAL] 1,000 anomalies for merchant m-1 (tenant acme)"
    assert len(message.examples) == 5
    assert message.examples[0].score == max(a.score for a in burst)
    assert message.link is not None and "entity_id=m-1" in message.link
    rows = harness.notification_rows()
    assert [(r.receiver, r.status, r.anomaly_count, r.attempts) for r in rows] == [
        ("email", "sent", 1000, 1),
        ("slack", "sent", 1000, 1),
    ] or [(r.receiver, r.status, r.anomaly_count, r.attempts) for r in rows] == [
        ("slack", "sent", 1000, 1),
        ("email", "sent", 1000, 1),
    ]


def test_replayed_anomalies_notify_nobody(harness: Harness) -> None:
    burst = [make_anomaly(i) for i in range(200)]
    harness.service.ingest_anomalies(burst)
    harness.clock.advance(30)
    harness.run()
    assert len(harness.slack.sent) == 1

    replay = harness.service.ingest_anomalies(burst + burst[:10])  # a batch may repeat an anomaly too
    assert (replay.received, replay.new, replay.routed) == (200, 0, 0)
    for _ in range(3):
        harness.clock.advance(301)
        harness.run()
    assert len(harness.slack.sent) == 1 and len(harness.email.sent) == 1
    assert len(harness.notification_rows()) == 2


def test_later_alerts_wait_for_group_interval_then_reminders_follow_repeat_interval(harness: Harness) -> None:
    harness.service.ingest_anomalies([make_anomaly(1)])
    harness.clock.advance(30)
    harness.run()
    assert len(harness.slack.sent) == 1

    harness.clock.advance(60)
    harness.service.ingest_anomalies([make_anomaly(2), make_anomaly(3)])
    harness.clock.advance(200)  # 260 s after the first message: inside group_interval
    harness.run()
    assert len(harness.slack.sent) == 1
    harness.clock.advance(40)  # 300 s after the first message
    harness.run()
    assert len(harness.slack.sent) == 2
    assert harness.slack.sent[1].alert_count == 2 and harness.slack.sent[1].kind == "firing"

    with_reminders = Harness(harness.engine, make_config(alert_active_for="6h"), harness.clock)
    with_reminders.service.ingest_anomalies([make_anomaly(10, entity_id="m-2")])
    harness.clock.advance(30)
    with_reminders.run()
    assert len(with_reminders.slack.sent) == 1
    harness.clock.advance(4 * 3600 - 1)
    with_reminders.run()
    assert len(with_reminders.slack.sent) == 1
    harness.clock.advance(1)
    with_reminders.run()
    assert [m.kind for m in with_reminders.slack.sent] == ["firing", "reminder"]


def test_expired_alerts_drop_their_group(harness: Harness) -> None:
    harness.service.ingest_anomalies([make_anomaly(1)])
    harness.clock.advance(30)
    harness.run()
    harness.clock.advance(3600)
    harness.run()
    with harness.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(alert_groups)).scalar_one() == 0
    assert len(harness.slack.sent) == 1


def test_anomalies_past_their_active_window_are_recorded_but_not_sent(harness: Harness) -> None:
    old = [make_anomaly(i, detected_at=T0 - timedelta(hours=2)) for i in range(5)]
    result = harness.service.ingest_anomalies(old)
    assert (result.new, result.stale, result.routed) == (5, 5, 0)
    harness.clock.advance(60)
    harness.run()
    assert harness.slack.sent == []


def test_info_is_never_notified(harness: Harness) -> None:
    result = harness.service.ingest_anomalies([make_anomaly(i, severity=Severity.INFO) for i in range(3)])
    assert (result.new, result.routed) == (3, 0)


def test_silence_suppresses_and_its_expiry_restores(harness: Harness) -> None:
    silence = create_silence(
        engine=harness.engine,
        matchers=['entity_id="m-1"'],
        starts_at=harness.clock.now,
        ends_at=harness.clock.now + timedelta(hours=2),
        created_by="ana",
        comment="merchant onboarding test traffic",
        now=harness.clock.now,
        tenant_id="acme",
    )
    harness.service.ingest_anomalies([make_anomaly(i) for i in range(20)])
    harness.service.ingest_anomalies([make_anomaly(100 + i, entity_id="m-2") for i in range(3)])
    harness.clock.advance(30)
    harness.run()
    assert [m.group_labels["entity_id"] for m in harness.slack.sent] == ["m-2"]

    harness.clock.advance(60)
    expire_silence(engine=harness.engine, silence_id=silence.silence_id, expired_by="ana", now=harness.clock.now)
    harness.clock.advance(240)  # the muted group re-checks every group_interval (5 min)
    harness.run()
    assert [m.group_labels["entity_id"] for m in harness.slack.sent] == ["m-2", "m-1"]
    assert harness.slack.sent[1].alert_count == 20


def test_a_critical_alert_inhibits_that_entitys_warnings_only(harness: Harness) -> None:
    harness.service.ingest_anomalies([make_anomaly(1, severity=Severity.CRITICAL, entity_id="m-1")])
    harness.service.ingest_anomalies(
        [
            make_anomaly(2, severity=Severity.WARNING, entity_id="m-1"),
            make_anomaly(3, severity=Severity.WARNING, entity_id="m-9"),
        ]
    )
    harness.clock.advance(30)
    harness.run()
    warnings = [m for m in harness.email.sent if m.severity is Severity.WARNING]
    assert [m.group_labels["entity_id"] for m in warnings] == ["m-9"]


def test_two_replicas_flushing_at_once_send_each_group_once(db: Engine) -> None:
    clock = FakeClock()
    replicas = [Harness(db, make_config(), clock) for _ in range(2)]
    for index in range(6):
        replicas[index % 2].service.ingest_anomalies(
            [make_anomaly(index * 100 + i, entity_id=f"m-{index}") for i in range(50)]
        )
    clock.advance(30)
    barrier = threading.Barrier(2)

    def work(replica: Harness) -> None:
        barrier.wait()
        replica.run()

    threads = [threading.Thread(target=work, args=(replica,)) for replica in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent = [m for replica in replicas for m in replica.slack.sent + replica.email.sent]
    assert len(sent) == 12
    assert len({m.dedup_key for m in sent}) == 12


def test_retry_after_is_a_floor_and_a_failing_receiver_does_not_block_others(db: Engine) -> None:
    harness = Harness(db, make_config(), FakeClock())
    harness.slack.script = [DeliveryResult.retry("HTTP 429: rate limited", retry_after=2.0)]
    harness.email.script = [DeliveryResult.failed("SMTP 550: mailbox unavailable")]
    harness.service.ingest_anomalies([make_anomaly(1, entity_id="m-1"), make_anomaly(2, entity_id="m-2")])
    harness.clock.advance(30)
    harness.run()
    rows = {(r.receiver, r.group_key.split("/")[-1]): r for r in harness.notification_rows()}
    statuses = sorted((key[0], r.status) for key, r in rows.items())
    # Slack: first attempt got 429, the second Slack message was skipped this round (same receiver).
    # Email: the first failed permanently (5xx); the second still went out.
    assert statuses == [("email", "failed"), ("email", "sent"), ("slack", "pending"), ("slack", "pending")]
    retried = [r for r in rows.values() if r.receiver == "slack" and r.attempts == 1]
    assert len(retried) == 1 and retried[0].next_attempt_at >= harness.clock.now + timedelta(seconds=2)

    harness.clock.advance(1.9)
    harness.service.dispatch()
    assert len(harness.slack.sent) == 1  # the skipped one went out; the 429 one waits for Retry-After
    harness.clock.advance(0.2)
    harness.service.dispatch()
    assert len(harness.slack.sent) == 2 and harness.slack.attempts == 3


def test_a_receiver_that_keeps_failing_is_given_up_after_max_attempts(db: Engine) -> None:
    harness = Harness(db, make_config(), FakeClock())
    harness.slack.script = [DeliveryResult.retry("HTTP 503: unavailable")] * 5
    harness.service.ingest_anomalies([make_anomaly(1)])
    harness.clock.advance(30)
    harness.run()
    for _ in range(5):
        harness.clock.advance(600)
        harness.service.dispatch()
    slack = [r for r in harness.notification_rows() if r.receiver == "slack"]
    assert [(r.status, r.attempts) for r in slack] == [("failed", 3)]
    assert slack[0].last_error.startswith("gave up after 3 attempts")


def test_unconfigured_receivers_log_suppressed_notifications(db: Engine) -> None:
    raw_receivers = [
        {"name": "slack", "type": "slack_webhook", "optional": True, "webhook_url_env": "VIGIL_UNSET_URL"},
        {"name": "email", "type": "email", "host": "h", "sender": "a@b.c", "to": ["x@y.z"]},
    ]
    harness = Harness(db, make_config(receivers=raw_receivers), FakeClock())
    harness.service.ingest_anomalies([make_anomaly(1, entity_type=EntityType.CARD, entity_id="c-1")])
    harness.clock.advance(30)
    harness.run()
    rows = {r.receiver: r for r in harness.notification_rows()}
    assert rows["slack"].status == "suppressed" and "VIGIL_UNSET_URL" in rows["slack"].last_error
    assert rows["email"].status == "sent"
