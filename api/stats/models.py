"""Views of dashboard figures."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.anomalies.models import AnomalySummary

TrendBucket = Literal["hour", "day"]
TrendGroup = Literal["severity", "detector", "family"]


class RiskyEntity(BaseModel):
    tenant_id: str
    entity_type: str
    entity_id: str
    anomaly_count: int
    max_score: float
    last_event_time: datetime


class Summary(BaseModel):
    """What the dashboard's first screen shows."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "timezone": "Europe/Berlin",
                    "day_start": "2026-11-23T23:00:00Z",
                    "anomalies_today": 128,
                    "today_by_severity": {"info": 80, "warning": 40, "critical": 8},
                    "open_cases": 17,
                    "last_anomalies": [],
                    "high_risk_entities": [
                        {
                            "tenant_id": "acme",
                            "entity_type": "account",
                            "entity_id": "acc-42",
                            "anomaly_count": 5,
                            "max_score": 97.0,
                            "last_event_time": "2026-11-24T10:15:02Z",
                        }
                    ],
                    "generated_at": "2026-11-24T10:16:00Z",
                }
            ]
        }
    )

    timezone: str
    day_start: datetime = Field(description="Midnight of today in `timezone`.")
    anomalies_today: int
    today_by_severity: dict[str, int]
    open_cases: int
    last_anomalies: list[AnomalySummary] = Field(description="The 10 most recent anomalies.")
    high_risk_entities: list[RiskyEntity] = Field(description="Entities with >= 3 anomalies in the last 7 days.")
    generated_at: datetime


class TrendPoint(BaseModel):
    bucket_start: datetime
    group: str
    count: int


class Trends(BaseModel):
    """Anomaly counts per time bucket and group (empty buckets are omitted)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "since": "2026-11-23T11:00:00Z",
                    "until": "2026-11-24T11:00:00Z",
                    "bucket": "hour",
                    "group_by": "severity",
                    "timezone": "UTC",
                    "points": [{"bucket_start": "2026-11-24T10:00:00Z", "group": "critical", "count": 3}],
                }
            ]
        }
    )

    since: datetime
    until: datetime
    bucket: TrendBucket
    group_by: TrendGroup
    timezone: str
    points: list[TrendPoint]
