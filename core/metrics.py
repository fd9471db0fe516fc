"""Prometheus metrics shared by every service, and the ops HTTP endpoint.

Metric names are a `Literal` type so a typo fails mypy, and the Grafana
dashboard and alert rules are tested against this list.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final, Literal

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

MetricName = Literal[
    "vigil_messages_consumed_total",
    "vigil_messages_produced_total",
    "vigil_batches_total",
    "vigil_batch_failures_total",
    "vigil_batch_duration_seconds",
    "vigil_batch_size",
    "vigil_dead_letters_total",
    "vigil_transactions_accepted_total",
    "vigil_transactions_rejected_total",
    "vigil_ingest_latency_seconds",
    "vigil_end_to_end_latency_seconds",
    "vigil_anomalies_total",
    "vigil_anomalies_written_total",
    "vigil_detector_degraded",
    "vigil_detector_skipped_total",
    "vigil_notifications_total",
    "vigil_consumer_lag",
    "vigil_http_requests_total",
    "vigil_http_request_duration_seconds",
    "vigil_features_late_total",
    "vigil_features_buffered",
    "vigil_features_entities",
    "vigil_ml_model_loads_total",
    "vigil_ml_model_version",
    "vigil_ml_rows_scored_total",
    "vigil_dlq_depth",
    "vigil_score_features_total",
    "vigil_score_follower_lag",
    "vigil_score_peek_wait_seconds",
]

_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

MESSAGES_CONSUMED: Final = Counter("vigil_messages_consumed", "Kafka messages consumed.", ["service", "topic"])
MESSAGES_PRODUCED: Final = Counter(
    "vigil_messages_produced", "Kafka messages produced and acknowledged.", ["service", "topic"]
)
BATCHES: Final = Counter("vigil_batches", "Micro-batches processed and committed.", ["service"])
BATCH_FAILURES: Final = Counter("vigil_batch_failures", "Micro-batches that failed and were retried.", ["service"])
BATCH_DURATION: Final = Histogram(
    "vigil_batch_duration_seconds",
    "Time to process and commit one micro-batch.",
    ["service"],
    buckets=_LATENCY_BUCKETS,
)
BATCH_SIZE: Final = Histogram(
    "vigil_batch_size",
    "Messages per micro-batch.",
    ["service"],
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000),
)
DEAD_LETTERS: Final = Counter("vigil_dead_letters", "Messages routed to the dead-letter topic.", ["service", "reason"])
TRANSACTIONS_ACCEPTED: Final = Counter(
    "vigil_transactions_accepted", "Valid transactions accepted by ingestion.", ["source"]
)
TRANSACTIONS_REJECTED: Final = Counter(
    "vigil_transactions_rejected", "Transactions rejected by ingestion.", ["source", "reason"]
)
INGEST_LATENCY: Final = Histogram(
    "vigil_ingest_latency_seconds", "From occurred_at to durable ingestion.", buckets=_LATENCY_BUCKETS
)
END_TO_END_LATENCY: Final = Histogram(
    "vigil_end_to_end_latency_seconds",
    "From ingestion to a detector's verdict.",
    ["detector_family"],
    buckets=_LATENCY_BUCKETS,
)
ANOMALIES: Final = Counter("vigil_anomalies", "Anomalies flagged.", ["detector_family", "detector_name", "severity"])
ANOMALIES_WRITTEN: Final = Counter(
    "vigil_anomalies_written", "Anomaly rows newly inserted (duplicates excluded).", ["service"]
)
DETECTOR_DEGRADED: Final = Gauge(
    "vigil_detector_degraded", "1 while a detector runs degraded (e.g. model unavailable).", ["detector"]
)
DETECTOR_SKIPPED: Final = Counter(
    "vigil_detector_skipped", "Transactions a detector could not judge, by reason.", ["detector", "reason"]
)
NOTIFICATIONS: Final = Counter(
    "vigil_notifications", "Alert notifications by receiver and outcome.", ["receiver", "status"]
)
CONSUMER_LAG: Final = Gauge(
    "vigil_consumer_lag", "Messages behind the log end, per consumer group and topic.", ["group", "topic"]
)
HTTP_REQUESTS: Final = Counter("vigil_http_requests", "API requests.", ["method", "route", "status"])
HTTP_DURATION: Final = Histogram(
    "vigil_http_request_duration_seconds",
    "API request latency.",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
)


FEATURES_LATE: Final = Counter(
    "vigil_features_late", "Transactions beyond the allowed lateness (flagged late, not folded into state)."
)
FEATURES_BUFFERED: Final = Gauge("vigil_features_buffered", "Transactions waiting for the event-time watermark.")
FEATURES_ENTITIES: Final = Gauge("vigil_features_entities", "Entities held in feature state.", ["kind"])

ML_MODEL_LOADS: Final = Counter(
    "vigil_ml_model_loads", "Model loads by detect-ml (hot swaps included), by outcome.", ["detector", "outcome"]
)
ML_MODEL_VERSION: Final = Gauge("vigil_ml_model_version", "Registered model version detect-ml serves.", ["detector"])
ML_ROWS_SCORED: Final = Counter("vigil_ml_rows_scored", "Rows an ML model scored.", ["detector"])

DLQ_DEPTH: Final = Gauge(
    "vigil_dlq_depth", "Records retained in a dead-letter topic (log end minus log start).", ["topic"]
)


class Health:
    """Liveness and readiness of a stream service, as the ops endpoint reports them.

    Live means the poll loop ticked recently (a stuck loop gets restarted);
    ready means the service finished start-up and its dependencies answer.
    """

    def __init__(self, *, stale_after_seconds: float = 60.0) -> None:
        self._last_tick = time.monotonic()
        self._ready = False
        self._stale_after = stale_after_seconds
        self._checks: dict[str, Callable[[], bool]] = {}
        self._lock = threading.Lock()

    def tick(self) -> None:
        self._last_tick = time.monotonic()

    def set_ready(self, ready: bool) -> None:
        self._ready = ready

    def add_check(self, name: str, check: Callable[[], bool]) -> None:
        with self._lock:
            self._checks[name] = check

    def live(self) -> bool:
        return time.monotonic() - self._last_tick < self._stale_after

    def ready(self) -> tuple[bool, dict[str, bool]]:
        with self._lock:
            results = {name: _safe(check) for name, check in self._checks.items()}
        return self._ready and all(results.values()), results


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:  # a failing probe means "not ready", never a crashed endpoint
        return False


def serve_ops(*, health: Health, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104
    """Serve /metrics, /healthz and /readyz on a daemon thread; returns the server to shut down."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._reply(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                ok = health.live()
                self._reply(200 if ok else 503, b'{"live": %s}' % (b"true" if ok else b"false"))
            elif self.path == "/readyz":
                ok, checks = health.ready()
                body = "{" + ", ".join(f'"{k}": {str(v).lower()}' for k, v in checks.items()) + "}"
                self._reply(200 if ok else 503, f'{{"ready": {str(ok).lower()}, "checks": {body}}}'.encode())
            else:
                self._reply(404, b'{"detail": "not found"}')

        def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="ops-http", daemon=True).start()
    return server


# POST /v1/score (vigil.scoring): where each request's features came from, and how far the API's
# copy of the stream's feature state is behind tx.valid.
SCORE_FEATURES: Final = Counter(
    "vigil_score_features", "Synchronous scores by feature source (follower = stream state, replay).", ["path"]
)
SCORE_FOLLOWER_LAG: Final = Gauge(
    "vigil_score_follower_lag", "Messages of tx.valid the API's feature follower has not read yet (-1: not started)."
)
SCORE_PEEK_WAIT: Final = Histogram(
    "vigil_score_peek_wait_seconds",
    "Time a synchronous score waited for the feature follower's lock (it applies the stream in short chunks).",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05),
)
