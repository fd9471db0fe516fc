"""Views of decisions (no analyst notes, assignees or labels: facility privacy)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.contracts import Reason

Decision = Literal["approve", "review", "decline"]


class Thresholds(BaseModel):
    review: float = Field(description="Scores at or above this are `review`.")
    decline: float = Field(description="Scores at or above this are `decline`.")


class VerdictView(BaseModel):
    detector_family: str
    detector_name: str
    detector_version: str
    score: float | None = Field(description="0-100; null when the detector could not judge.")
    severity: str | None
    reasons: list[Reason]


class ScoreResponse(BaseModel):
    """A synchronous verdict; nothing is stored (submit the transaction for the stream)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transaction_id": "tx-1",
                    "tenant_id": "acme",
                    "score": 86.0,
                    "decision": "decline",
                    "thresholds": {"review": 50.0, "decline": 80.0},
                    "reasons": [
                        {"feature": "amount", "value": 4999.0, "baseline": 42.5, "text": "Amount is 5.1σ high."}
                    ],
                    "detectors": [],
                    "degraded": [],
                    "scored_at": "2026-11-24T10:15:02.012Z",
                }
            ]
        }
    )

    transaction_id: str
    tenant_id: str
    score: float = Field(ge=0, le=100)
    decision: Decision
    thresholds: Thresholds
    reasons: list[Reason] = Field(description="The strongest reasons across detectors, most important first.")
    detectors: list[VerdictView]
    degraded: list[str] = Field(description="Detectors that could not run normally (e.g. model fallback).")
    scored_at: datetime


class AnomalyBrief(BaseModel):
    detector_family: str
    detector_name: str
    detector_version: str
    score: float
    severity: str
    event_time: datetime
    detected_at: datetime
    reasons: list[str] = Field(description="Detector explanations (never analyst notes).")


class DecisionView(BaseModel):
    """What the stream decided about one transaction so far."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transaction_id": "tx-1",
                    "tenant_id": "acme",
                    "known": True,
                    "score": 91.0,
                    "decision": "decline",
                    "thresholds": {"review": 50.0, "decline": 80.0},
                    "anomalies": [
                        {
                            "detector_family": "rules",
                            "detector_name": "rule:card-testing",
                            "detector_version": "3",
                            "score": 100.0,
                            "severity": "critical",
                            "event_time": "2026-11-24T10:15:02Z",
                            "detected_at": "2026-11-24T10:15:02.300Z",
                            "reasons": ["7 payments under 2.00 within 10 minutes"],
                        }
                    ],
                }
            ]
        }
    )

    transaction_id: str
    tenant_id: str
    known: bool = Field(description="Whether the transaction is stored yet (ingestion may still be catching up).")
    score: float = Field(description="Highest anomaly score recorded so far (0 when none).")
    decision: Decision
    thresholds: Thresholds
    anomalies: list[AnomalyBrief]
