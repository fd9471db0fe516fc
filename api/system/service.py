"""What `GET /v1/system/status` reports, gathered without writing anything anywhere.

- consumer lag per group: committed offsets (AdminClient) against each partition's high watermark;
  group state and member count say whether anyone is consuming;
- DLQ depth: messages retained in the dead-letter topic (high minus low watermark);
- throughput: messages per second entering `tx.valid` (high watermarks sampled over up to a
  minute) and anomalies detected in the last minute (PostgreSQL, indexed on `detected_at`);
- service readiness and degraded detectors: each service's ops `/readyz` probed with a short
  timeout; failing `model:<name>` checks (and the API's own scorer) name degraded detectors.

Answers are cached for `CACHE_SECONDS`, so dashboards polling every few seconds cost one
round of probes per cache period however many people watch.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]
from sqlalchemy import Engine, func, select

from core.kafka import client_config
from core.schema import anomalies
from core.settings import Settings
from core.topics import TX_DLQ, TX_VALID

log = logging.getLogger(__name__)

CACHE_SECONDS: Final = 2.0
RATE_WINDOW_SECONDS: Final = 60.0
_KAFKA_TIMEOUT: Final = 3.0


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A stream service's consumer group and the topics it reads (filled in by the composition root)."""

    service: str
    group: str
    topics: tuple[str, ...]
    # False for services that assign partitions themselves (features): they commit offsets to the
    # group but never join it, so 0 members says nothing about whether they run.
    joins_group: bool = True


@dataclass(frozen=True, slots=True)
class GroupLag:
    service: str
    group: str
    topics: tuple[str, ...]
    joins_group: bool
    state: str  # stable, empty, rebalancing, dead, unknown ...
    members: int | None
    lag: int | None  # None: offsets unknown (nothing committed yet, or Kafka unreachable)
    partitions: int


@dataclass(frozen=True, slots=True)
class Probe:
    service: str
    status: str  # ready | not_ready | unreachable
    checks: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StatusReport:
    generated_at: datetime
    kafka_reachable: bool
    groups: list[GroupLag]
    probes: list[Probe]
    dlq_topic: str
    dlq_depth: int | None
    transactions_per_second: float | None
    anomalies_last_minute: int
    degraded: list[str]


def _state_name(state: Any) -> str:
    name = getattr(state, "name", None) or str(state)
    return name.lower()


class KafkaView:
    """Offsets and groups through one long-lived AdminClient."""

    def __init__(self, settings: Settings) -> None:
        self._admin = AdminClient(client_config(settings, **{"socket.timeout.ms": 2000}))

    def partitions(self, topics: Sequence[str]) -> dict[str, int]:
        metadata = self._admin.list_topics(timeout=_KAFKA_TIMEOUT)
        return {t: len(metadata.topics[t].partitions) for t in topics if t in metadata.topics}

    def watermarks(self, partitions: dict[str, int]) -> dict[tuple[str, int], tuple[int, int]]:
        """(low, high) watermark of every partition of the given topics."""
        requested: dict[TopicPartition, Any] = {}
        for topic, count in partitions.items():
            for p in range(count):
                requested[TopicPartition(topic, p)] = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        if not requested:
            return {}
        highs = {
            (tp.topic, tp.partition): f.result(timeout=_KAFKA_TIMEOUT).offset
            for tp, f in self._admin.list_offsets(requested, request_timeout=_KAFKA_TIMEOUT).items()
        }
        lows_request = {tp: OffsetSpec.earliest() for tp in requested}  # type: ignore[no-untyped-call]
        lows = {
            (tp.topic, tp.partition): f.result(timeout=_KAFKA_TIMEOUT).offset
            for tp, f in self._admin.list_offsets(lows_request, request_timeout=_KAFKA_TIMEOUT).items()
        }
        return {key: (lows[key], highs[key]) for key in highs}

    def groups(self, specs: Sequence[ConsumerSpec]) -> dict[str, tuple[str, int]]:
        """State and member count of each group (unknown groups come back as `dead` with 0 members)."""
        if not specs:
            return {}
        futures = self._admin.describe_consumer_groups([s.group for s in specs], request_timeout=_KAFKA_TIMEOUT)
        found: dict[str, tuple[str, int]] = {}
        for group, future in futures.items():
            try:
                description = future.result(timeout=_KAFKA_TIMEOUT)
                found[group] = (_state_name(description.state), len(description.members))
            except KafkaException:
                found[group] = ("unknown", 0)
        return found

    def committed(self, spec: ConsumerSpec, partitions: dict[str, int]) -> dict[tuple[str, int], int]:
        """Committed offset per partition of the group's topics (absent = nothing committed)."""
        request = [
            ConsumerGroupTopicPartitions(
                spec.group, [TopicPartition(t, p) for t in spec.topics for p in range(partitions.get(t, 0))]
            )
        ]
        result = self._admin.list_consumer_group_offsets(request, request_timeout=_KAFKA_TIMEOUT)
        offsets: dict[tuple[str, int], int] = {}
        for future in result.values():
            for tp in future.result(timeout=_KAFKA_TIMEOUT).topic_partitions or []:
                if tp.error is None and tp.offset >= 0:
                    offsets[(tp.topic, tp.partition)] = tp.offset
        return offsets


class SystemStatus:
    """Gathers and caches the pipeline's status for the API (one instance per process)."""

    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        consumers: Sequence[ConsumerSpec],
        local_degraded: Callable[[], list[str]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._consumers = tuple(consumers)
        self._local_degraded = local_degraded
        self._clock = clock
        self._kafka: KafkaView | None = None
        self._lock = threading.Lock()
        self._cached: tuple[float, tuple[str, ...] | None, StatusReport] | None = None
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def report(self, *, tenants: Sequence[str] | None) -> StatusReport:
        """The status (anomaly counts scoped to `tenants`; None = every tenant), at most CACHE_SECONDS old."""
        key = None if tenants is None else tuple(sorted(tenants))
        with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < CACHE_SECONDS and self._cached[1] == key:
                return self._cached[2]
            report = self._gather(tenants)
            self._cached = (now, key, report)
            return report

    def _kafka_view(self) -> KafkaView:
        if self._kafka is None:
            self._kafka = KafkaView(self._settings)
        return self._kafka

    def _gather(self, tenants: Sequence[str] | None) -> StatusReport:
        with concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="status-probe") as pool:
            probes_future = pool.submit(self._probe_all)
            anomalies_future = pool.submit(self._anomalies_last_minute, tenants)
            kafka_reachable, groups, dlq_depth, rate = self._from_kafka()
            probes = probes_future.result()
            recent = anomalies_future.result()
        degraded = sorted(
            {
                check.removeprefix("model:")
                for probe in probes
                for check, ok in probe.checks.items()
                if check.startswith("model:") and not ok
            }
            | set(self._local_degraded() if self._local_degraded else [])
        )
        return StatusReport(
            generated_at=datetime.now(UTC),
            kafka_reachable=kafka_reachable,
            groups=groups,
            probes=probes,
            dlq_topic=self._settings.topic(TX_DLQ),
            dlq_depth=dlq_depth,
            transactions_per_second=rate,
            anomalies_last_minute=recent,
            degraded=degraded,
        )

    def _from_kafka(self) -> tuple[bool, list[GroupLag], int | None, float | None]:
        dlq, valid = self._settings.topic(TX_DLQ), self._settings.topic(TX_VALID)
        try:
            kafka = self._kafka_view()
            topics = sorted({dlq, valid, *(t for spec in self._consumers for t in spec.topics)})
            partitions = kafka.partitions(topics)
            marks = kafka.watermarks(partitions)
            states = kafka.groups(self._consumers)
            groups = []
            for spec in self._consumers:
                committed = kafka.committed(spec, partitions)
                keys = [(t, p) for t in spec.topics for p in range(partitions.get(t, 0))]
                # A partition with nothing committed yet counts from its low watermark (all retained messages).
                lag = sum(max(0, marks[k][1] - committed.get(k, marks[k][0])) for k in keys if k in marks)
                state, members = states.get(spec.group, ("unknown", 0))
                groups.append(
                    GroupLag(
                        service=spec.service,
                        group=spec.group,
                        topics=spec.topics,
                        joins_group=spec.joins_group,
                        state=state,
                        members=members,
                        lag=lag if keys else None,
                        partitions=len(keys),
                    )
                )
            dlq_depth = sum(high - low for (topic, _p), (low, high) in marks.items() if topic == dlq)
            if dlq not in partitions:
                dlq_depth = 0
            valid_total = sum(high for (topic, _p), (_low, high) in marks.items() if topic == valid)
            return True, groups, dlq_depth, self._rate(valid_total)
        except (KafkaException, concurrent.futures.TimeoutError, KeyError) as exc:
            log.warning("system status: Kafka unavailable", extra={"error": str(exc)})
            unknown = [
                GroupLag(
                    s.service, s.group, s.topics, s.joins_group, state="unknown", members=None, lag=None, partitions=0
                )
                for s in self._consumers
            ]
            return False, unknown, None, None

    def _rate(self, total: int) -> float | None:
        """Messages per second into tx.valid over the samples of the last minute (None until two exist)."""
        now = self._clock()
        samples = self._samples
        samples.append((now, total))
        while len(samples) > 2 and now - samples[0][0] > RATE_WINDOW_SECONDS:
            samples.popleft()
        first_time, first_total = samples[0]
        if now - first_time < 0.5:
            return None
        return round(max(0, total - first_total) / (now - first_time), 2)

    def _anomalies_last_minute(self, tenants: Sequence[str] | None) -> int:
        since = datetime.now(UTC) - timedelta(minutes=1)
        query = select(func.count()).select_from(anomalies).where(anomalies.c.detected_at >= since)
        if tenants is not None:
            query = query.where(anomalies.c.tenant_id.in_(list(tenants)))
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def _probe_all(self) -> list[Probe]:
        targets = self._settings.status_ops_targets
        if not targets:
            return []
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(targets)) as pool:
            return list(pool.map(lambda item: self._probe(*item), sorted(targets.items())))

    def _probe(self, service: str, base_url: str) -> Probe:
        try:
            response = httpx.get(f"{base_url.rstrip('/')}/readyz", timeout=self._settings.status_probe_timeout_seconds)
            body = response.json()
        except (httpx.HTTPError, ValueError):
            return Probe(service=service, status="unreachable")
        checks = body.get("checks") if isinstance(body, dict) else None
        parsed = {str(k): bool(v) for k, v in checks.items()} if isinstance(checks, dict) else {}
        ready = response.status_code == 200 and isinstance(body, dict) and body.get("ready") is True
        return Probe(service=service, status="ready" if ready else "not_ready", checks=parsed)
