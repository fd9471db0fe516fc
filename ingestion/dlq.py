"""Dead-letter tools (`vigil dlq inspect|replay`) and a committed-topic reader."""

from __future__ import annotations

import base64
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from confluent_kafka import OFFSET_BEGINNING, Message, TopicPartition
from sqlalchemy import Engine, select

from core.kafka import (
    DLQ_AT,
    DLQ_DETAIL,
    DLQ_REASON,
    DLQ_SERVICE,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    DeliveringProducer,
    header_pairs,
    make_consumer,
)
from core.schema import transactions
from core.settings import Settings
from core.topics import TX_DLQ, TX_RAW
from ingestion.errors import DeadLetterError
from ingestion.service import REPLAY_HEADER, SERVICE

INGEST_SERVICE: Final = SERVICE


def read_topic(settings: Settings, topic: str, *, timeout: float = 30.0, idle: float = 3.0) -> list[Message]:
    """Every committed record of `topic`, from the beginning, without committing offsets.

    Ends when each partition's position reaches its high watermark. Positions, not the
    last offset seen, because transactional topics end in commit markers that are never
    delivered; `idle` bounds the wait when an open transaction holds readers back.
    """
    consumer = make_consumer(settings, group_id=f"vigil-reader-{time.time_ns()}")
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise DeadLetterError(f"topic {topic!r} does not exist")
        ends: dict[int, int] = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in ends])
        messages: list[Message] = []
        deadline = time.monotonic() + timeout
        last_progress = time.monotonic()
        while ends and time.monotonic() < deadline and time.monotonic() - last_progress < idle:
            batch = consumer.consume(num_messages=10_000, timeout=0.2)
            for message in batch:
                if message.error() is None:
                    messages.append(message)
            positions = consumer.position([TopicPartition(topic, partition) for partition in ends])
            for position in positions:
                if position.offset >= ends[position.partition]:
                    ends.pop(position.partition)
                    last_progress = time.monotonic()
            if batch:
                last_progress = time.monotonic()
        return messages
    finally:
        consumer.close()


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One record of the dead-letter topic, with the reason and where it came from."""

    topic: str
    partition: int
    offset: int
    reason: str
    detail: str
    service: str
    dead_lettered_at: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]  # the producer's own headers (not Vigil's)
    transaction_id: str | None  # best effort: the value may not even be JSON
    tenant_id: str | None = None  # likewise; ids are unique per tenant (ADR 0013)

    @property
    def ref(self) -> str:
        """`topic/partition/offset` of this dead letter (what `vigil dlq replay --ref` takes)."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def source_ref(self) -> str:
        return f"{self.source_topic}/{self.source_partition}/{self.source_offset}"

    def as_json(self) -> dict[str, Any]:
        try:
            text: str | None = self.value.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return {
            "ref": self.ref,
            "reason": self.reason,
            "detail": self.detail,
            "service": self.service,
            "dead_lettered_at": self.dead_lettered_at,
            "source": self.source_ref,
            "transaction_id": self.transaction_id,
            "tenant_id": self.tenant_id,
            "key": None if self.key is None else self.key.decode("utf-8", errors="replace"),
            "value": text,
            "value_base64": base64.b64encode(self.value).decode(),
            "bytes": len(self.value),
        }

    @classmethod
    def of(cls, message: Message) -> DeadLetterRecord:
        headers = header_pairs(message)
        own = {name: value.decode("utf-8", errors="replace") for name, value in headers if name.startswith("vigil.")}
        value = message.value() or b""
        tenant_id, transaction_id = _identity(value)
        return cls(
            topic=message.topic() or "",
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            reason=own.get(DLQ_REASON, "unknown"),
            detail=own.get(DLQ_DETAIL, ""),
            service=own.get(DLQ_SERVICE, ""),
            dead_lettered_at=own.get(DLQ_AT, ""),
            source_topic=own.get(SOURCE_TOPIC, ""),
            source_partition=_int(own.get(SOURCE_PARTITION)),
            source_offset=_int(own.get(SOURCE_OFFSET)),
            key=message.key(),
            value=value,
            headers=tuple((name, data) for name, data in headers if not name.startswith("vigil.")),
            transaction_id=transaction_id,
            tenant_id=tenant_id,
        )


def _int(text: str | None) -> int:
    try:
        return int(text or "-1")
    except ValueError:
        return -1


def _identity(value: bytes) -> tuple[str | None, str | None]:
    """(tenant_id, transaction_id) of a dead letter's value, each None where it has none."""
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    tenant, transaction = parsed.get("tenant_id"), parsed.get("transaction_id")
    return (
        tenant[:128] if isinstance(tenant, str) else None,
        transaction[:128] if isinstance(transaction, str) else None,
    )


def inspect_dead_letters(
    settings: Settings,
    *,
    reasons: Collection[str] = (),
    refs: Collection[str] = (),
    limit: int | None = None,
    timeout: float = 30.0,
) -> list[DeadLetterRecord]:
    """Dead letters in log order, filtered by reason and/or ref, at most `limit` of them."""
    records = [DeadLetterRecord.of(m) for m in read_topic(settings, settings.topic(TX_DLQ), timeout=timeout)]
    records.sort(key=lambda record: (record.partition, record.offset))
    if reasons:
        records = [record for record in records if record.reason in reasons]
    if refs:
        unknown = set(refs) - {record.ref for record in records}
        if unknown:
            raise DeadLetterError(f"no such dead letter: {', '.join(sorted(unknown))}")
        records = [record for record in records if record.ref in refs]
    return records if limit is None else records[:limit]


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What `replay_dead_letters` did with each selected record (refs per outcome)."""

    resubmitted: list[str] = field(default_factory=list)
    already_ingested: list[str] = field(default_factory=list)  # its transaction_id is in the table
    duplicate_in_selection: list[str] = field(default_factory=list)  # same id as an earlier selected record
    not_from_ingestion: list[str] = field(default_factory=list)  # another service's dead letter

    def as_json(self) -> dict[str, list[str]]:
        return {
            "resubmitted": self.resubmitted,
            "already_ingested": self.already_ingested,
            "duplicate_in_selection": self.duplicate_in_selection,
            "not_from_ingestion": self.not_from_ingestion,
        }


def replay_dead_letters(
    settings: Settings,
    records: Sequence[DeadLetterRecord],
    *,
    engine: Engine,
    dry_run: bool = False,
) -> ReplayReport:
    """Re-submit dead letters to tx.raw (original key, bytes and headers), without duplicates.

    Skipped: records whose tenant's transaction id is already stored, and later records sharing
    a tenant and id with an earlier selected one. Each re-submission carries `vigil.replay.of`, so even
    two concurrent replays of the same dead letter are ingested once (the second is skipped).
    """
    report = ReplayReport()
    from_ingestion = [record for record in records if record.service == INGEST_SERVICE]
    report.not_from_ingestion.extend(record.ref for record in records if record.service != INGEST_SERVICE)
    stored = _stored_keys(engine, [key for r in from_ingestion if (key := _key(r)) is not None])
    chosen: list[DeadLetterRecord] = []
    seen: set[tuple[str, str]] = set()
    for record in from_ingestion:
        key = _key(record)
        if key is not None and key in stored:
            report.already_ingested.append(record.ref)
        elif key is not None and key in seen:
            report.duplicate_in_selection.append(record.ref)
        else:
            if key is not None:
                seen.add(key)
            chosen.append(record)
    report.resubmitted.extend(record.ref for record in chosen)
    if dry_run or not chosen:
        return report
    producer = DeliveringProducer(settings, service="dlq-replay")
    topic = settings.topic(TX_RAW)
    for record in chosen:
        headers = [*record.headers, (REPLAY_HEADER, record.ref.encode())]
        producer.produce(topic, record.value, key=record.key, headers=headers)
    producer.flush_or_raise()
    return report


def _key(record: DeadLetterRecord) -> tuple[str, str] | None:
    # Without a tenant the record cannot have been stored (the contract requires one): always resubmitted.
    if record.tenant_id is None or record.transaction_id is None:
        return None
    return record.tenant_id, record.transaction_id


def _stored_keys(engine: Engine, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    if not keys:
        return set()
    t = transactions.c
    with engine.connect() as connection:
        rows = connection.execute(
            select(t.tenant_id, t.transaction_id).where(t.transaction_id.in_({key[1] for key in keys}))
        )
        return {(row[0], row[1]) for row in rows} & set(keys)
