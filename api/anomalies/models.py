"""Views of anomalies (rows of the unified `anomalies` table)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.contracts import AnomalyStatus, DetectorFamily, EntityType, Reason, Severity, in_currency_units

AnomalySort = Literal["-event_time", "event_time", "-score", "score"]

_EXAMPLE: dict[str, Any] = {
    "anomaly_id": "0f8e9a52-7a43-5c59-9d0e-3a4b1f0d2c11",
    "tenant_id": "acme",
    "transaction_id": "tx-20261124-000123",
    "entity_type": "account",
    "entity_id": "acc-42",
    "event_time": "2026-11-24T10:15:02Z",
    "detected_at": "2026-11-24T10:15:02.180Z",
    "detector_family": "statistical",
    "detector_name": "amount_zscore",
    "detector_version": "1",
    "score_raw": 5.1,
    "score": 91.0,
    "severity": "critical",
    "status": "open",
    "amount": "4999.00",
    "currency": "EUR",
    "reasons": [
        {
            "feature": "amount",
            "value": 4999.0,
            "baseline": 42.5,
            "contribution": 1.0,
            "text": "Amount 4999.00 is 5.1 standard deviations above this account's mean of 42.50.",
        }
    ],
}


class AnomalySummary(BaseModel):
    """An anomaly as listed (without the feature snapshot)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    anomaly_id: UUID
    tenant_id: str
    transaction_id: str
    entity_type: EntityType
    entity_id: str
    event_time: datetime
    detected_at: datetime
    detector_family: DetectorFamily
    detector_name: str
    detector_version: str
    score_raw: float
    score: float = Field(description="Normalised 0-100; higher is more anomalous.")
    severity: Severity
    status: AnomalyStatus
    amount: Decimal | None = None
    currency: str | None = None
    reasons: list[Reason]

    @model_validator(mode="after")
    def _amount_in_currency_units(self) -> AnomalySummary:
        if self.amount is not None and self.currency is not None:
            self.amount = in_currency_units(self.amount, self.currency)
        return self


class AnomalyDetail(AnomalySummary):
    """An anomaly with the feature snapshot the detector saw."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{**_EXAMPLE, "features": {"account_amount_history_mean": 42.5, "account_count_1h": 1.0}}]
        }
    )

    features: dict[str, float | None]


class AnomalyPage(BaseModel):
    """One page of anomalies; follow `next_cursor` for the next."""

    data: list[AnomalySummary]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null when done.")
