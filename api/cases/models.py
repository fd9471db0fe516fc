"""Views of cases, notes, labels and entity groups."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from api.anomalies.models import AnomalySummary
from api.common import FreeText, Identifier
from core.contracts import EntityType, Severity


class CaseStatus(StrEnum):
    OPEN = "open"
    INVESTIGATING = "investigating"
    CONFIRMED_FRAUD = "confirmed_fraud"
    FALSE_POSITIVE = "false_positive"
    EXPECTED = "expected"


# Analyst verdicts become training labels: fraud is the positive class, the others are not.
VERDICT_LABELS: dict[CaseStatus, str] = {
    CaseStatus.CONFIRMED_FRAUD: "fraud",
    CaseStatus.FALSE_POSITIVE: "false_positive",
    CaseStatus.EXPECTED: "expected",
}

CaseSort = Literal["-event_time", "event_time", "-max_score"]

_CASE_EXAMPLE: dict[str, Any] = {
    "case_id": "5b7f0c7e-2f0a-4d0c-9c43-1f5b2b8c9a10",
    "tenant_id": "acme",
    "transaction_id": "tx-20261124-000123",
    "entity_type": "account",
    "entity_id": "acc-42",
    "event_time": "2026-11-24T10:15:02Z",
    "status": "investigating",
    "assignee": "alice",
    "max_severity": "critical",
    "max_score": 91.0,
    "anomaly_count": 3,
    "opened_at": "2026-11-24T10:15:03Z",
    "updated_at": "2026-11-24T10:20:41Z",
}


class CaseSummary(BaseModel):
    """One transaction's anomalies as a unit of analyst work."""

    model_config = ConfigDict(json_schema_extra={"examples": [_CASE_EXAMPLE]})

    case_id: UUID
    tenant_id: str
    transaction_id: str
    entity_type: EntityType
    entity_id: str
    event_time: datetime
    status: CaseStatus
    assignee: str | None
    max_severity: Severity
    max_score: float
    anomaly_count: int
    opened_at: datetime
    updated_at: datetime


class Note(BaseModel):
    note_id: int
    author: str
    body: str
    created_at: datetime


class Label(BaseModel):
    """An analyst verdict as stored for training (`fraud`, `false_positive`, `expected`)."""

    label: str
    source: str
    author: str
    reason: str | None
    labelled_at: datetime


class CaseDetail(CaseSummary):
    """A case with every detector's verdict on the transaction, the notes and the current label."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_CASE_EXAMPLE,
                    "anomalies": [],
                    "notes": [
                        {
                            "note_id": 1,
                            "author": "alice",
                            "body": "Called the cardholder.",
                            "created_at": "2026-11-24T10:20:41Z",
                        }
                    ],
                    "label": None,
                }
            ]
        }
    )

    anomalies: list[AnomalySummary]
    notes: list[Note]
    label: Label | None


class CaseUpdate(BaseModel):
    """Fields to change; omitted fields stay as they are. `assignee: null` unassigns."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"status": "confirmed_fraud", "note": "Cardholder confirmed the card was stolen."},
                {"assignee": "alice"},
            ]
        },
    )

    status: CaseStatus | None = None
    assignee: Identifier | None = None
    note: FreeText | None = Field(None, min_length=1, description="Appended to the case's notes.")


class CasePage(BaseModel):
    data: list[CaseSummary]
    next_cursor: str | None


class EntityGroup(BaseModel):
    """All cases of one entity (account, card, merchant, device, ip) within a tenant."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tenant_id": "acme",
                    "entity_type": "account",
                    "entity_id": "acc-42",
                    "case_count": 4,
                    "open_cases": 2,
                    "anomaly_count": 9,
                    "max_score": 91.0,
                    "max_severity": "critical",
                    "last_event_time": "2026-11-24T10:15:02Z",
                }
            ]
        }
    )

    tenant_id: str
    entity_type: EntityType
    entity_id: str
    case_count: int
    open_cases: int
    anomaly_count: int
    max_score: float
    max_severity: Severity
    last_event_time: datetime


class EntityGroupPage(BaseModel):
    data: list[EntityGroup]
    next_cursor: str | None


class EntityCases(BaseModel):
    """One entity's cases, newest first."""

    groups: list[EntityGroup]
    cases: list[CaseSummary]
