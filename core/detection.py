"""The detector framework shared by every detector family, and the unified anomaly writer.

A detector *scores* a micro-batch of feature vectors (higher = more anomalous);
a `Thresholds` object *decides* which scores become anomalies and how severe.
`AnomalyWriter` stores them idempotently and publishes them; `DetectionHandler`
plugs the whole thing into `core.kafka.BatchLoop` for a `tx.features` consumer group.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import orjson
from confluent_kafka import Message
from pydantic import ValidationError
from sqlalchemy import Connection, Engine, case, func
from sqlalchemy.dialects.postgresql import insert

from core import metrics, schema
from core.contracts import (
    Anomaly,
    DetectorFamily,
    EntityType,
    FeatureVector,
    Reason,
    Severity,
    Transaction,
)
from core.kafka import DeadLetter, DeliveringProducer, StopFlag, send_dead_letters
from core.settings import Settings
from core.topics import ANOMALIES

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]
SEVERITY_RANK: Final = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class FeatureBatch:
    """A micro-batch of feature vectors with cached columnar access for vectorised scoring."""

    def __init__(self, vectors: Sequence[FeatureVector]) -> None:
        self.vectors = tuple(vectors)
        self._features: dict[str, FloatArray] = {}
        self._fields: dict[str, ObjectArray | FloatArray] = {}

    def __len__(self) -> int:
        return len(self.vectors)

    def feature(self, name: str) -> FloatArray:
        """Feature column as float64; NaN where the feature is missing or None. Do not mutate."""
        column = self._features.get(name)
        if column is None:
            column = np.fromiter(
                (_nan_if_none(v.features.get(name)) for v in self.vectors), dtype=np.float64, count=len(self)
            )
            column.flags.writeable = False
            self._features[name] = column
        return column

    def field(self, name: str) -> ObjectArray | FloatArray:
        """Transaction field column: float64 for numbers (amount, lat, lon, hour), objects otherwise."""
        column = self._fields.get(name)
        if column is None:
            if name == "amount":
                column = np.fromiter((float(v.transaction.amount) for v in self.vectors), np.float64, len(self))
            elif name == "hour":
                column = np.fromiter(
                    (v.transaction.occurred_at.astimezone(UTC).hour for v in self.vectors),
                    np.float64,
                    len(self),
                )
            elif name in ("lat", "lon"):
                column = np.fromiter(
                    (_nan_if_none(getattr(v.transaction, name)) for v in self.vectors), np.float64, len(self)
                )
            else:
                values = [getattr(v.transaction, name) for v in self.vectors]
                column = np.empty(len(values), dtype=object)
                column[:] = [None if x is None else str(x) for x in values]
            column.flags.writeable = False
            self._fields[name] = column
        return column

    @cached_property
    def transactions(self) -> tuple[Transaction, ...]:
        return tuple(v.transaction for v in self.vectors)


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else float(value)


@dataclass(frozen=True, slots=True)
class Scores:
    """A detector's output for a batch: one entry per row.

    `normalised` is 0-100 (NaN = not judged, e.g. insufficient history).
    `severity`, when given, overrides the threshold bands (rules carry their own severity).
    """

    raw: FloatArray
    normalised: FloatArray
    severity: ObjectArray | None = None


@runtime_checkable
class Detector(Protocol):
    """One scoring function. Higher scores mean more anomalous; scoring never mutates the batch.

    `name` and `version` form the anomaly's natural key with the transaction id:
    bump the version whenever the logic or the model changes.
    """

    @property
    def family(self) -> DetectorFamily: ...

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def score(self, batch: FeatureBatch) -> Scores:
        """Score every row of the batch."""
        ...

    def explain(self, batch: FeatureBatch, index: int) -> list[Reason]:
        """Reasons for row `index` (called only for flagged rows), most important first."""
        ...


def entity_of(detector: Detector, transaction: Transaction) -> tuple[EntityType, str]:
    """The entity an anomaly is about: the detector's choice, else the account."""
    chooser = getattr(detector, "entity_for", None)
    if callable(chooser):
        chosen: tuple[EntityType, str] = chooser(transaction)
        return chosen
    return EntityType.ACCOUNT, transaction.account_id


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Severity bands on the normalised score: warning at `warning`, critical at `critical`."""

    warning: float = 50.0
    critical: float = 80.0
    info: float | None = None  # None: scores below `warning` are not flagged at all

    def __post_init__(self) -> None:
        if not 0 <= self.warning <= self.critical <= 100:
            raise ValueError("thresholds must satisfy 0 <= warning <= critical <= 100")

    def decide(self, scores: Scores) -> list[tuple[int, Severity]]:
        """Rows to flag, with their severity."""
        if scores.severity is not None:
            flagged = np.flatnonzero(~np.isnan(scores.normalised))
            return [(int(i), Severity(scores.severity[i])) for i in flagged]
        normalised = np.nan_to_num(scores.normalised, nan=-1.0)
        floor = self.info if self.info is not None else self.warning
        decided = []
        for i in np.flatnonzero(normalised >= floor):
            value = normalised[i]
            if value >= self.critical:
                severity = Severity.CRITICAL
            elif value >= self.warning:
                severity = Severity.WARNING
            else:
                severity = Severity.INFO
            decided.append((int(i), severity))
        return decided


def detect(
    *,
    detectors: Sequence[Detector],
    batch: FeatureBatch,
    thresholds: Thresholds | Callable[[Detector], Thresholds],
    now: datetime | None = None,
) -> list[Anomaly]:
    """Run every detector over the batch and turn flagged rows into anomalies."""
    detected_at = now or datetime.now(UTC)
    anomalies: list[Anomaly] = []
    for detector in detectors:
        scores = detector.score(batch)
        limits = thresholds(detector) if callable(thresholds) else thresholds
        for index, severity in limits.decide(scores):
            vector = batch.vectors[index]
            transaction = vector.transaction
            entity_type, entity_id = entity_of(detector, transaction)
            anomalies.append(
                Anomaly.build(
                    detected_at=detected_at,
                    tenant_id=transaction.tenant_id,
                    transaction_id=transaction.transaction_id,
                    entity_type=entity_type,
                    entity_id=entity_id,
                    event_time=transaction.occurred_at,
                    detector_family=detector.family,
                    detector_name=detector.name,
                    detector_version=detector.version,
                    score_raw=float(scores.raw[index]),
                    score=float(np.clip(scores.normalised[index], 0.0, 100.0)),
                    severity=severity,
                    reasons=detector.explain(batch, index),
                    features=vector.features,
                    amount=transaction.amount,
                    currency=transaction.currency,
                )
            )
            metrics.ANOMALIES.labels(detector.family.value, detector.name, severity.value).inc()
    return anomalies


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError


class AnomalyWriter:
    """Stores anomalies idempotently, keeps cases in step, then publishes them.

    Order matters: rows (and their cases) are committed first, then every
    anomaly of the batch is published and acknowledged; only then may the
    caller commit offsets. A replay re-inserts nothing (ON CONFLICT DO NOTHING on
    the deterministic anomaly id) and re-publishes, which downstream dedups by id.
    """

    def __init__(self, *, engine: Engine, producer: DeliveringProducer, settings: Settings, service: str) -> None:
        self._engine = engine
        self._producer = producer
        self._topic = settings.topic(ANOMALIES)
        self._service = service

    def write(self, anomalies: Sequence[Anomaly], *, publish: bool = True) -> int:
        """Insert, update cases, publish; returns the number of rows newly inserted."""
        if not anomalies:
            return 0
        rows = [_anomaly_row(a) for a in anomalies]
        with self._engine.begin() as connection:
            inserted_ids = _copy_insert(connection, rows)
            new = [a for a in anomalies if a.anomaly_id in inserted_ids]
            if new:
                _upsert_cases(connection, new)
        metrics.ANOMALIES_WRITTEN.labels(self._service).inc(len(new))
        if publish:
            for anomaly in anomalies:
                self._producer.produce(
                    self._topic,
                    orjson.dumps(anomaly.model_dump(mode="json")),
                    key=f"{anomaly.tenant_id}/{anomaly.entity_type.value}/{anomaly.entity_id}",
                )
            self._producer.flush_or_raise()
        return len(new)


_COLUMNS: Final = tuple(column.name for column in schema.anomalies.columns)
_JSON_COLUMNS: Final = frozenset({"reasons", "features"})


def _copy_insert(connection: Connection, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """COPY rows into a session temp table, then insert the new ones; returns their ids.

    COPY avoids building a giant statement per batch; ON CONFLICT DO NOTHING on the
    deterministic id keeps replays harmless.
    """
    columns = ", ".join(_COLUMNS)
    raw = connection.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS anomalies_incoming (LIKE anomalies INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS"
        )
        with cursor.copy(f"COPY anomalies_incoming ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([orjson.dumps(row[c]).decode() if c in _JSON_COLUMNS else row[c] for c in _COLUMNS])
        cursor.execute(
            f"INSERT INTO anomalies ({columns}) SELECT {columns} FROM anomalies_incoming "
            "ON CONFLICT DO NOTHING RETURNING anomaly_id"
        )
        return {row[0] for row in cursor.fetchall()}


def _anomaly_row(anomaly: Anomaly) -> dict[str, Any]:
    row = anomaly.model_dump(mode="python", exclude={"schema_version"})
    row["reasons"] = [r.model_dump(mode="json") for r in anomaly.reasons]
    row["severity"] = anomaly.severity.value
    row["status"] = anomaly.status.value
    row["entity_type"] = anomaly.entity_type.value
    row["detector_family"] = anomaly.detector_family.value
    return row


def _upsert_cases(connection: Connection, anomalies: Sequence[Anomaly]) -> None:
    """One case per (tenant, transaction): counts only newly inserted anomalies, so replays don't inflate."""
    grouped: dict[tuple[str, str], list[Anomaly]] = {}
    for anomaly in anomalies:
        grouped.setdefault((anomaly.tenant_id, anomaly.transaction_id), []).append(anomaly)
    rows = []
    for (tenant_id, transaction_id), items in grouped.items():
        top = max(items, key=lambda a: (SEVERITY_RANK[a.severity], a.score))
        rows.append(
            {
                "case_id": uuid.uuid5(uuid.NAMESPACE_URL, f"vigil-case/{tenant_id}/{transaction_id}"),
                "tenant_id": tenant_id,
                "transaction_id": transaction_id,
                "entity_type": top.entity_type.value,
                "entity_id": top.entity_id,
                "event_time": top.event_time,
                "max_severity": max((a.severity for a in items), key=SEVERITY_RANK.__getitem__).value,
                "max_score": max(a.score for a in items),
                "anomaly_count": len(items),
            }
        )
    rows.sort(key=lambda r: (r["tenant_id"], r["transaction_id"]))  # stable lock order across replicas
    cases = schema.cases
    statement = insert(cases)
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        constraint="cases_tenant_transaction_key",
        set_={
            "anomaly_count": cases.c.anomaly_count + excluded.anomaly_count,
            "max_score": func.greatest(cases.c.max_score, excluded.max_score),
            "max_severity": case(
                (
                    _severity_rank(excluded.max_severity) > _severity_rank(cases.c.max_severity),
                    excluded.max_severity,
                ),
                else_=cases.c.max_severity,
            ),
            "updated_at": func.now(),
        },
    )
    connection.execute(statement, rows)


def _severity_rank(column: Any) -> Any:
    return case({"critical": 2, "warning": 1}, value=column, else_=0)


# --- the detection stream service ---------------------------------------------------------


class DetectionHandler:
    """`BatchHandler` for one detector family: decode -> score -> decide -> write -> publish."""

    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        producer: DeliveringProducer,
        service: str,
        detectors: Callable[[], Sequence[Detector]],
        thresholds: Thresholds | Callable[[Detector], Thresholds] = Thresholds(),
    ) -> None:
        self._settings = settings
        self._producer = producer
        self._service = service
        self._detectors = detectors
        self._thresholds = thresholds
        self.writer = AnomalyWriter(engine=engine, producer=producer, settings=settings, service=service)

    def process(self, messages: list[Message]) -> None:
        vectors, letters = decode_feature_vectors(messages)
        if letters:
            send_dead_letters(self._producer, self._settings, letters, service=self._service)
        if vectors:
            batch = FeatureBatch(vectors)
            anomalies = detect(detectors=self._detectors(), batch=batch, thresholds=self._thresholds)
            self.writer.write(anomalies)
            now = time.time()
            for vector in vectors:
                if vector.transaction.ingested_at is not None:
                    metrics.END_TO_END_LATENCY.labels(self._service).observe(
                        max(0.0, now - vector.transaction.ingested_at.timestamp())
                    )
        # Dead letters (and anything produced above) must be acknowledged before offsets move.
        self._producer.flush_or_raise()

    def close(self) -> None:
        self._producer.flush_or_raise()


def decode_feature_vectors(messages: Sequence[Message]) -> tuple[list[FeatureVector], list[DeadLetter]]:
    """Parse `tx.features` messages; anything that does not match the contract becomes a dead letter."""
    vectors: list[FeatureVector] = []
    letters: list[DeadLetter] = []
    for message in messages:
        try:
            vectors.append(FeatureVector.model_validate_json(message.value() or b""))
        except ValidationError as exc:
            first = exc.errors()[0]
            reason = "invalid_json" if first["type"] == "json_invalid" else "contract_violation"
            letters.append(DeadLetter.of(message, reason=reason, detail=str(exc)[:2000]))
    return vectors, letters


def run_detection_service(
    *,
    settings: Settings,
    service: str,
    group_id: str,
    detectors: Callable[[], Sequence[Detector]],
    thresholds: Thresholds | Callable[[Detector], Thresholds] = Thresholds(),
    stop: StopFlag,
    on_idle: Callable[[], None] | None = None,
    health: metrics.Health | None = None,
) -> None:
    """Consume `tx.features` as `group_id` until stopped, writing anomalies; the shared detector main loop."""
    from core.db import database_ready, make_engine
    from core.kafka import BatchLoop, make_consumer
    from core.topics import TX_FEATURES

    health = health or metrics.Health()
    engine = make_engine(settings, pool_size=2)
    health.add_check("database", lambda: database_ready(engine))
    ops = metrics.serve_ops(health=health, port=settings.metrics_port) if settings.metrics_port else None
    producer = DeliveringProducer(settings, service=service)
    handler = DetectionHandler(
        settings=settings,
        engine=engine,
        producer=producer,
        service=service,
        detectors=detectors,
        thresholds=thresholds,
    )
    try:
        BatchLoop(
            consumer=make_consumer(settings, group_id=group_id),
            topics=[settings.topic(TX_FEATURES)],
            handler=handler,
            service=service,
            batch_size=settings.batch_size,
            batch_timeout=settings.batch_timeout_ms / 1000,
            stop=stop,
            health=health,
            on_idle=on_idle,
        ).run()
    finally:
        if ops is not None:
            ops.shutdown()
        engine.dispose()
