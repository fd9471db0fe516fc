"""System alerts: conditions about Vigil itself, raised as alerts and routed like any other.

- AnomalyRateHigh: more distinct anomalies in the last hour than the ceiling ("possible
  system issue": a broken feature or model flags everything).
- DeadLetterGrowth: the DLQ grew by more than the threshold within the window.
Detector degradation is a Prometheus rule (alerting/prometheus-rules.yaml): the gauge lives
in the detector processes, which this service does not see.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Engine

from alerting.config import SystemAlerts
from alerting.model import Alert, AlertSummary
from alerting.store import anomalies_received_since
from core.contracts import Severity

_NAMESPACE: Final = uuid.UUID("0d6f3a52-2f7e-4a59-9d0e-3c1f5b7a9e21")


def _system_alert(
    name: str, bucket: str, *, severity: Severity, title: str, reason: str, now: datetime, active_for: timedelta
) -> Alert:
    # One id per condition and time bucket: repeated checks in the same bucket are deduplicated.
    return Alert(
        alert_id=uuid.uuid5(_NAMESPACE, f"{name}\x1f{bucket}"),
        tenant_id=None,
        kind="system",
        severity=severity,
        score=100.0,
        labels={"alertname": name, "kind": "system", "severity": severity.value},
        summary=AlertSummary(title=title, reason=reason, entity="vigil", detector="alerting/system"),
        starts_at=now,
        ends_at=now + active_for,
    )


class SystemMonitor:
    """Evaluates the system conditions; `dlq_size` returns the DLQ's total messages (None = unknown)."""

    def __init__(
        self, *, config: SystemAlerts, active_for: timedelta, dlq_size: Callable[[], int | None] | None = None
    ) -> None:
        self._config = config
        self._active_for = active_for
        self._dlq_size = dlq_size
        self._samples: deque[tuple[datetime, int]] = deque()
        self._next_check: datetime | None = None

    def due(self, now: datetime) -> bool:
        return self._config.enabled and (self._next_check is None or now >= self._next_check)

    def check(self, *, engine: Engine, now: datetime) -> list[Alert]:
        """Alerts for every condition that holds now."""
        self._next_check = now + self._config.check_interval
        severity = Severity(self._config.severity)
        found: list[Alert] = []
        ceiling = self._config.anomalies_per_hour_ceiling
        count = anomalies_received_since(engine=engine, since=now - timedelta(hours=1))
        if count > ceiling:
            found.append(
                _system_alert(
                    "AnomalyRateHigh",
                    now.strftime("%Y-%m-%dT%H"),
                    severity=severity,
                    title=f"Anomaly rate above ceiling: {count:,} in the last hour (ceiling {ceiling:,})",
                    reason="Possible system issue: check recent deployments, feature values and model versions.",
                    now=now,
                    active_for=self._active_for,
                )
            )
        growth = self._dlq_growth(now)
        if growth is not None and growth > self._config.dlq_growth_threshold:
            window = self._config.dlq_window
            bucket = int(now.timestamp() // max(1.0, window.total_seconds()))
            found.append(
                _system_alert(
                    "DeadLetterGrowth",
                    str(bucket),
                    severity=severity,
                    title=f"Dead-letter topic grew by {growth:,} in {_human(window)}",
                    reason=f"More than {self._config.dlq_growth_threshold:,} rejected messages: "
                    "a producer may be sending malformed data.",
                    now=now,
                    active_for=self._active_for,
                )
            )
        return found

    def _dlq_growth(self, now: datetime) -> int | None:
        size = self._dlq_size() if self._dlq_size is not None else None
        if size is None:
            return None
        self._samples.append((now, size))
        horizon = now - self._config.dlq_window
        while len(self._samples) > 1 and self._samples[1][0] <= horizon:
            self._samples.popleft()  # keep one sample at or before the window's start as the baseline
        return size - self._samples[0][1]


def _human(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"
