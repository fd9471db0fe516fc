"""Per-process state of the API, built once by `create_app` and read by dependencies."""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Engine

from api.auth.keys import VigilKeys
from api.auth.service import PrincipalRecord, get_principal
from api.auth.tokens import TokenIssuer, TokenVerifier
from api.ports import ApiPorts
from api.system.service import SystemStatus
from core.errors import KafkaDeliveryError
from core.kafka import DeliveringProducer
from core.settings import Settings

log = logging.getLogger(__name__)

# Principals are re-read this often, so disabling one takes effect within seconds
# without a database round trip on every request.
PRINCIPAL_CACHE_SECONDS: Final = 5.0
PRODUCER_POOL_SIZE: Final = 4
# An HTTP client is told 503 when the broker has not confirmed within this time; librdkafka must then
# give the message up too, rather than deliver it minutes after the client was told to retry.
DELIVERY_TIMEOUT_SECONDS: Final = 10.0


class PrincipalCache:
    def __init__(self, engine: Engine, *, ttl_seconds: float = PRINCIPAL_CACHE_SECONDS) -> None:
        self._engine = engine
        self._ttl = ttl_seconds
        self._entries: dict[str, tuple[float, PrincipalRecord | None]] = {}
        self._loading: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def cached(self, principal_id: str) -> tuple[bool, PrincipalRecord | None]:
        """(True, record) when a fresh entry exists, else (False, None): never touches the database."""
        with self._lock:
            entry = self._entries.get(principal_id)
        if entry is not None and time.monotonic() - entry[0] < self._ttl:
            return True, entry[1]
        return False, None

    def get(self, principal_id: str) -> PrincipalRecord | None:
        """The principal, from the cache or (one loader per principal at a time) from the database.

        Single-flight: when an entry expires under load, one request reloads it and the others
        wait for that result instead of all queueing for database connections.
        """
        with self._lock:
            loading = self._loading.setdefault(principal_id, threading.Lock())
        with loading:
            found, record = self.cached(principal_id)
            if found:
                return record
            with self._engine.connect() as connection:
                record = get_principal(connection=connection, principal_id=principal_id)
            with self._lock:
                if len(self._entries) > 10_000:
                    self._entries.clear()
                    self._loading = {principal_id: loading}
                self._entries[principal_id] = (time.monotonic(), record)
            return record

    def forget(self, principal_id: str) -> None:
        with self._lock:
            self._entries.pop(principal_id, None)


class RateLimiter:
    """Token buckets per key: `rate` per second sustained, `burst` at once. In-process, per replica."""

    def __init__(self, *, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> int | None:
        """None if allowed, else whole seconds until one request would be."""
        now = time.monotonic()
        with self._lock:
            tokens, updated = self._buckets.get(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - updated) * self._rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > 100_000:
                    self._prune(now)
                return None
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self._rate))

    def _prune(self, now: float) -> None:
        # Buckets that have refilled carry no information; dropping them bounds memory.
        full = [k for k, (t, u) in self._buckets.items() if t + (now - u) * self._rate >= self._burst]
        for key in full:
            del self._buckets[key]


class ProducerPool:
    """A few producers, each used by one request at a time.

    `flush_or_raise` reports on everything its producer sent, so two requests
    sharing one producer could see each other's failures; a pool keeps every
    request's delivery verdict its own.
    """

    def __init__(self, settings: Settings, *, size: int = PRODUCER_POOL_SIZE) -> None:
        self._settings = settings
        self._size = size
        self._idle: queue.LifoQueue[DeliveringProducer] = queue.LifoQueue()
        self._created = 0
        self._lock = threading.Lock()

    @contextmanager
    def acquire(self) -> Iterator[DeliveringProducer]:
        producer = self._take()
        try:
            yield producer
        except BaseException:
            # A producer that failed may still hold undelivered messages: replace it rather than reuse it.
            self._idle.put(self._new())
            raise
        self._idle.put(producer)

    def _take(self) -> DeliveringProducer:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._created < self._size:
                self._created += 1
                return self._new()
        return self._idle.get()

    def _new(self) -> DeliveringProducer:
        return DeliveringProducer(
            self._settings, service="api", **{"message.timeout.ms": int(DELIVERY_TIMEOUT_SECONDS * 1000)}
        )

    def close(self) -> None:
        while True:
            try:
                producer = self._idle.get_nowait()
            except queue.Empty:
                return
            producer.poll(0)
            try:
                producer.flush_or_raise(5.0)
            except KafkaDeliveryError as exc:
                # Shutting down: every request already had its verdict; this is only a leftover flush.
                log.warning("producer flush at shutdown failed", extra={"error": str(exc)})


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    ports: ApiPorts
    keys: VigilKeys
    issuer: TokenIssuer
    verifier: TokenVerifier
    principals: PrincipalCache
    limiter: RateLimiter
    login_limiter: RateLimiter
    producers: ProducerPool
    status: SystemStatus | None = None
