"""What the alerting service works on: alerts (labels + a summary) and notification content.

An anomaly becomes an `Alert` whose labels are what routes, silences and
inhibition match on. A flushed group becomes one `NotificationContent`, the
channel-neutral message every channel renders in its own format.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from core.contracts import Anomaly, Severity

SEVERITY_RANK: Final[dict[str, int]] = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
AlertKind = Literal["anomaly", "system"]


class AlertSummary(BaseModel):
    """The few facts a person needs about one alert, kept with it for messages."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str
    transaction_id: str | None = None
    entity: str = ""
    detector: str = ""
    amount: str | None = None
    currency: str | None = None
    reason: str = ""
    event_time: AwareDatetime | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: an anomaly (or a system condition) with labels and an active window."""

    alert_id: uuid.UUID
    tenant_id: str | None
    kind: AlertKind
    severity: Severity
    score: float
    labels: dict[str, str]
    summary: AlertSummary
    starts_at: datetime
    ends_at: datetime


def anomaly_labels(anomaly: Anomaly) -> dict[str, str]:
    """The labels of an anomaly alert (the names routes, silences and inhibit rules use)."""
    return {
        "alertname": "Anomaly",
        "kind": "anomaly",
        "tenant_id": anomaly.tenant_id,
        "severity": anomaly.severity.value,
        "detector_family": anomaly.detector_family.value,
        "detector_name": anomaly.detector_name,
        "detector_version": anomaly.detector_version,
        "entity_type": anomaly.entity_type.value,
        "entity_id": anomaly.entity_id,
        "entity": f"{anomaly.entity_type.value}:{anomaly.entity_id}",
    }


def alert_from_anomaly(anomaly: Anomaly, *, now: datetime, active_for: timedelta) -> Alert:
    """Turn an anomaly into an alert active from its detection for `active_for`.

    A detector clock ahead of ours must not push the window into the future, so
    the start is the earlier of detection and now.
    """
    starts_at = min(anomaly.detected_at, now)
    top = max(anomaly.reasons, key=lambda reason: reason.contribution or 0.0)
    summary = AlertSummary(
        title=f"{anomaly.detector_name} flagged {anomaly.entity_type.value} {anomaly.entity_id}",
        transaction_id=anomaly.transaction_id,
        entity=f"{anomaly.entity_type.value}:{anomaly.entity_id}",
        detector=f"{anomaly.detector_family.value}/{anomaly.detector_name}@{anomaly.detector_version}",
        amount=None if anomaly.amount is None else str(anomaly.amount),
        currency=anomaly.currency,
        reason=top.text,
        event_time=anomaly.event_time,
    )
    return Alert(
        alert_id=anomaly.anomaly_id,
        tenant_id=anomaly.tenant_id,
        kind="anomaly",
        severity=anomaly.severity,
        score=anomaly.score,
        labels=anomaly_labels(anomaly),
        summary=summary,
        starts_at=starts_at,
        ends_at=starts_at + active_for,
    )


class Example(BaseModel):
    """One alert shown in a message (the top ones by score)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    severity: Severity
    score: float
    summary: AlertSummary
    link: str | None = None


class NotificationContent(BaseModel):
    """A group flush as one message: counts, top examples, links. Stored as the notification payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dedup_key: str
    group_key: str
    receiver: str
    kind: Literal["firing", "reminder"]
    title: str
    severity: Severity
    tenant_id: str | None
    group_labels: dict[str, str]
    alert_count: int = Field(ge=0, description="Alerts this message announces for the first time.")
    active_count: int = Field(ge=0, description="Alerts of the group still active (window not over).")
    counts_by_detector: dict[str, int]
    counts_by_severity: dict[str, int]
    first_at: AwareDatetime
    last_at: AwareDatetime
    examples: list[Example]
    link: str | None = None
    silence_command: str
    generated_at: AwareDatetime
