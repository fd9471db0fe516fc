"""The alerting service: consume anomalies, keep groups durable, flush on time, deliver.

Checkpoint order per micro-batch (the BatchLoop contract):
    parse -> dead-letter malformed input -> record alerts and group members (one DB
    transaction) -> flush the DLQ producer -> commit offsets.
Flushing and delivery run after every batch and whenever the topic is idle, on an
injectable clock, so a group flushes on time even when no new anomaly arrives.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer, Message, TopicPartition
from pydantic import ValidationError
from sqlalchemy import Engine

from alerting import store
from alerting.channels import Channel, DeliveryStatus, build_channels
from alerting.config import AlertingConfig
from alerting.model import NotificationContent, alert_from_anomaly
from alerting.retry import backoff_delay
from alerting.system import SystemMonitor
from core import metrics
from core.contracts import Anomaly
from core.db import database_ready, make_engine
from core.kafka import BatchLoop, DeadLetter, DeliveringProducer, StopFlag, make_consumer, send_dead_letters
from core.settings import Settings
from core.topics import ANOMALIES, TX_DLQ

log = logging.getLogger(__name__)

SERVICE = "alerting"
Clock = Callable[[], datetime]
_GC_EVERY = timedelta(minutes=10)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class DispatchReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0


class AlertingService:
    """Ingest, flush and dispatch over the database; every time decision uses `clock`."""

    def __init__(
        self,
        *,
        engine: Engine,
        config: AlertingConfig,
        channels: Mapping[str, Channel],
        public_url: str,
        clock: Clock = utc_now,
        rng: random.Random | None = None,
        dlq_size: Callable[[], int | None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self._engine = engine
        self._config = config
        self._channels = dict(channels)
        self._public_url = public_url
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._stop = stop or threading.Event()
        self._system = SystemMonitor(config=config.system, active_for=config.alert_active_for, dlq_size=dlq_size)
        self._next_tick = 0.0
        self._next_gc: datetime | None = None

    @property
    def config(self) -> AlertingConfig:
        return self._config

    def ingest_anomalies(self, anomalies: Sequence[Anomaly]) -> store.IngestResult:
        """Record anomalies as alerts; replays and duplicates are recognised and ignored."""
        now = self._clock()
        alerts = [alert_from_anomaly(a, now=now, active_for=self._config.alert_active_for) for a in anomalies]
        return store.ingest(engine=self._engine, alerts_in=alerts, config=self._config, now=now)

    def check_system(self) -> store.IngestResult | None:
        """Raise system alerts whose conditions hold (at most every `system.check_interval`)."""
        now = self._clock()
        if not self._system.due(now):
            return None
        found = self._system.check(engine=self._engine, now=now)
        return store.ingest(engine=self._engine, alerts_in=found, config=self._config, now=now)

    def flush(self) -> list[store.FlushOutcome]:
        """Flush every due group (in rounds, so a storm of groups does not hold one long transaction)."""
        outcomes: list[store.FlushOutcome] = []
        while not self._stop.is_set():
            done = store.flush_due(
                engine=self._engine, config=self._config, now=self._clock(), public_url=self._public_url
            )
            outcomes += done
            if len(done) < 50:
                break
        for outcome in outcomes:
            if outcome.notification_id is not None:
                log.info(
                    "group flushed",
                    extra={"group": outcome.group_key, "kind": outcome.plan.kind, "alerts": len(outcome.plan.include)},
                )
        return outcomes

    def dispatch(self) -> DispatchReport:
        """Try every due notification once; a receiver that fails is skipped for the rest of the round."""
        delivery = self._config.delivery
        claims = store.claim_notifications(
            engine=self._engine, now=self._clock(), lease=delivery.lease, limit=delivery.batch
        )
        sent = retried = failed = 0
        troubled: set[str] = set()
        unused: list[int] = []
        for claim in claims:
            if self._stop.is_set() or claim.receiver in troubled:
                unused.append(claim.notification_id)
                continue
            status, error, next_at = self._attempt(claim)
            store.record_attempt(
                engine=self._engine,
                notification_id=claim.notification_id,
                status=status,
                now=self._clock(),
                error=error,
                next_attempt_at=next_at,
            )
            metrics.NOTIFICATIONS.labels(claim.receiver, "retry" if status == "pending" else status).inc()
            if status == "sent":
                sent += 1
            elif status == "pending":
                retried += 1
                troubled.add(claim.receiver)
            else:
                failed += 1
                log.error("notification failed", extra={"receiver": claim.receiver, "error": error})
        store.release(engine=self._engine, notification_ids=unused)
        return DispatchReport(sent=sent, retried=retried, failed=failed, skipped=len(unused))

    def _attempt(self, claim: store.Claim) -> tuple[str, str | None, datetime | None]:
        channel = self._channels.get(claim.receiver)
        if channel is None:
            return "failed", f"receiver {claim.receiver!r} is not configured", None
        content = NotificationContent.model_validate(claim.payload)
        result = channel.send(content)
        attempts = claim.attempts + 1
        if result.status is DeliveryStatus.SENT:
            return "sent", result.error, None
        if result.status is DeliveryStatus.FAILED:
            return "failed", result.error, None
        delivery = self._config.delivery
        if attempts >= delivery.max_attempts:
            return "failed", f"gave up after {attempts} attempts: {result.error}", None
        wait = backoff_delay(
            attempts,
            initial=delivery.backoff_initial.total_seconds(),
            maximum=delivery.backoff_max.total_seconds(),
            rng=self._rng,
        )
        # The server's Retry-After is a floor, never shortened by our jitter.
        wait = max(wait, result.retry_after or 0.0)
        log.warning(
            "notification will be retried",
            extra={"receiver": claim.receiver, "error": result.error, "retry_in": round(wait, 3)},
        )
        return "pending", result.error, self._clock() + timedelta(seconds=wait)

    def tick(self, *, force: bool = False) -> None:
        """System checks, flush, dispatch and housekeeping; at most every `tick_interval` unless forced."""
        if not force and time.monotonic() < self._next_tick:
            return
        self._next_tick = time.monotonic() + self._config.tick_interval.total_seconds()
        self.check_system()
        self.flush()
        self.dispatch()
        now = self._clock()
        if self._next_gc is None or now >= self._next_gc:
            self._next_gc = now + _GC_EVERY
            store.forget_old_alerts(engine=self._engine, now=now, retention=self._config.alert_retention)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


def parse_anomalies(messages: Sequence[Message]) -> tuple[list[Anomaly], list[DeadLetter]]:
    """Valid anomalies, and dead letters (reason + original bytes) for everything else."""
    anomalies: list[Anomaly] = []
    letters: list[DeadLetter] = []
    for message in messages:
        value = message.value()
        if not value:
            letters.append(DeadLetter.of(message, reason="alerting.empty", detail="message has no value"))
            continue
        try:
            anomalies.append(Anomaly.model_validate_json(value))
        except ValidationError as exc:
            detail = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'value'}: {error['msg']}" for error in exc.errors()
            )
            letters.append(DeadLetter.of(message, reason="alerting.invalid_anomaly", detail=detail[:1000]))
    return anomalies, letters


class AnomalyHandler:
    """The BatchLoop handler: returns only once the batch's state is durable."""

    def __init__(self, *, service: AlertingService, producer: DeliveringProducer, settings: Settings) -> None:
        self._service = service
        self._producer = producer
        self._settings = settings

    def process(self, messages: list[Message]) -> None:
        anomalies, letters = parse_anomalies(messages)
        if letters:
            send_dead_letters(self._producer, self._settings, letters, service=SERVICE)
        result = self._service.ingest_anomalies(anomalies)
        if letters:
            self._producer.flush_or_raise()
        log.debug("batch ingested", extra={"new": result.new, "received": result.received})
        self._service.tick()

    def close(self) -> None:
        try:
            self._producer.flush_or_raise()
        finally:
            self._service.close()


def dlq_size_probe(consumer: Consumer, topic: str) -> Callable[[], int | None]:
    """Total messages in the DLQ (sum of high watermarks); None while it cannot be read."""

    def probe() -> int | None:
        try:
            metadata = consumer.list_topics(topic, timeout=5).topics.get(topic)
            if metadata is None or metadata.error is not None:
                return None
            return sum(
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1] for p in metadata.partitions
            )
        except Exception:  # the probe is advisory: a broker hiccup must not stop alerting
            log.warning("cannot read DLQ size", exc_info=True)
            return None

    return probe


def run_alerting(
    *, settings: Settings, config: AlertingConfig, stop: StopFlag, health: metrics.Health | None = None
) -> None:
    """Run `vigil run alerting` until `stop` is set (SIGTERM): drain, commit, close."""
    health = health or metrics.Health()
    engine = make_engine(settings, pool_size=2)
    health.add_check("database", lambda: database_ready(engine))
    # The topic prefix namespaces the consumer group too, so test runs and tenants never share offsets.
    consumer = make_consumer(settings, group_id=f"{settings.kafka_topic_prefix}{settings.alerting_consumer_group}")
    producer = DeliveringProducer(settings, service=SERVICE)
    service = AlertingService(
        engine=engine,
        config=config,
        channels=build_channels(config),
        public_url=settings.public_url,
        dlq_size=dlq_size_probe(consumer, settings.topic(TX_DLQ)),
        stop=stop.event,
    )
    ops = metrics.serve_ops(health=health, port=settings.metrics_port) if settings.metrics_port > 0 else None
    loop = BatchLoop(
        consumer=consumer,
        topics=[settings.topic(ANOMALIES)],
        handler=AnomalyHandler(service=service, producer=producer, settings=settings),
        service=SERVICE,
        batch_size=settings.batch_size,
        batch_timeout=settings.batch_timeout_ms / 1000,
        stop=stop,
        health=health,
        on_idle=service.tick,
    )
    log.info(
        "alerting started",
        extra={
            "receivers": sorted(r.name for r in config.receivers),
            "unconfigured": sorted(config.unconfigured_receivers),
            "routes": [route.id for route in config.routes],
        },
    )
    try:
        loop.run()
    finally:
        if ops is not None:
            ops.shutdown()
        engine.dispose()
