"""Where generated transactions go when streamed: Kafka (`tx.raw`) or the HTTP API, paced in real time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson

from core.kafka import DeliveringProducer, ensure_topics
from core.settings import Settings
from core.topics import LABELS, STREAM_TOPICS, TX_RAW
from vigil.generator.errors import SinkError
from vigil.generator.stream import GeneratedBatch, Label

HTTP_BATCH_MAX: Final = 1000  # the API's limit per POST /v1/transactions:batch
HTTP_ATTEMPTS: Final = 8
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})


class Sink(Protocol):
    def send(self, records: Sequence[dict[str, Any]], labels: Sequence[Label]) -> None:
        """Deliver a slice of transactions (and the labels of those among them that are fraud)."""

    def close(self) -> None:
        """Make everything sent durable (flush) and release resources."""


class KafkaSink:
    """Produce to `tx.raw` keyed by account (and labels to `labels` when asked); durable on close."""

    def __init__(self, settings: Settings, *, labels_topic: bool = False) -> None:
        wanted = {TX_RAW, LABELS} if labels_topic else {TX_RAW}
        ensure_topics(settings, [spec for spec in STREAM_TOPICS if spec.name in wanted])
        self._producer = DeliveringProducer(settings, service="generator")
        self._topic = settings.topic(TX_RAW)
        self._labels = settings.topic(LABELS) if labels_topic else None
        self.sent = 0

    def send(self, records: Sequence[dict[str, Any]], labels: Sequence[Label]) -> None:
        produce = self._producer.produce
        topic = self._topic
        for record in records:
            produce(topic, orjson.dumps(record), key=record["account_id"])
        if self._labels is not None:
            for label in labels:
                produce(self._labels, orjson.dumps(label._asdict()), key=label.transaction_id)
        self._producer.poll(0)  # serve delivery reports as we go
        self.sent += len(records)

    def close(self) -> None:
        self._producer.flush_or_raise()


@dataclass
class HttpResult:
    accepted: int = 0
    rejected: int = 0


class HttpSink:
    """POST batches to `{public_url}/v1/transactions:batch` with a bearer token.

    429 and 5xx are retried with backoff, honouring `Retry-After`; other refusals stop the
    run with the API's message. A retried batch may reach Kafka twice; ingestion keeps one
    (the second copy is dead-lettered as `duplicate_transaction_id`).
    """

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import httpx

        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=timeout,
        )
        self._sleep = sleep
        self.result = HttpResult()

    def send(self, records: Sequence[dict[str, Any]], labels: Sequence[Label]) -> None:
        for first in range(0, len(records), HTTP_BATCH_MAX):
            self._post(records[first : first + HTTP_BATCH_MAX])

    def _post(self, records: Sequence[dict[str, Any]]) -> None:
        import httpx

        body = orjson.dumps({"transactions": list(records)})
        delay = 0.5
        for attempt in range(1, HTTP_ATTEMPTS + 1):
            try:
                response = self._client.post("/v1/transactions:batch", content=body)
            except httpx.TransportError as exc:
                if attempt == HTTP_ATTEMPTS:
                    raise SinkError(f"API unreachable after {attempt} attempts: {exc}") from exc
                self._sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if response.status_code in (200, 202):
                payload = response.json()
                self.result.accepted += int(payload.get("accepted", len(records)))
                self.result.rejected += int(payload.get("rejected", 0))
                return
            if response.status_code in _RETRY_STATUSES and attempt < HTTP_ATTEMPTS:
                self._sleep(_retry_after(response.headers.get("Retry-After"), default=delay))
                delay = min(delay * 2, 30.0)
                continue
            raise SinkError(f"API refused the batch: HTTP {response.status_code} {response.text[:500]}")
        raise SinkError(f"API still refusing after {HTTP_ATTEMPTS} attempts")

    def close(self) -> None:
        self._client.close()


def _retry_after(value: str | None, *, default: float) -> float:
    """Seconds to wait from a `Retry-After` header (delta-seconds form), capped at a minute."""
    if value is None:
        return default
    try:
        return min(max(float(value), 0.0), 60.0)
    except ValueError:
        return default


def stream_paced(
    batches: Iterable[GeneratedBatch],
    sink: Sink,
    *,
    rate: float,
    should_stop: Callable[[], bool] = lambda: False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Send at `rate` transactions per wall-clock second, in small slices; returns how many were sent."""
    slice_size = max(1, int(rate / 20))
    started = clock()
    sent = 0
    for batch in batches:
        labels_by_id = {label.transaction_id: label for label in batch.labels}
        records = batch.transactions
        for first in range(0, len(records), slice_size):
            if should_stop():
                return sent
            chunk = records[first : first + slice_size]
            due = started + sent / rate
            wait = due - clock()
            if wait > 0:
                sleep(wait)
            chunk_labels = [labels_by_id[r["transaction_id"]] for r in chunk if r["transaction_id"] in labels_by_id]
            sink.send(chunk, chunk_labels)
            sent += len(chunk)
    return sent
