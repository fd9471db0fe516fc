"""Views of audit entries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditEntry(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "audit_id": 812,
                    "at": "2026-11-24T10:20:41Z",
                    "actor": "alice",
                    "tenant_id": "acme",
                    "action": "case.status",
                    "object_type": "case",
                    "object_id": "5b7f0c7e-2f0a-4d0c-9c43-1f5b2b8c9a10",
                    "details": {"from": "open", "to": "confirmed_fraud", "transaction_id": "tx-1"},
                }
            ]
        }
    )

    audit_id: int
    at: datetime
    actor: str
    tenant_id: str | None
    action: str
    object_type: str
    object_id: str
    details: dict[str, Any]


class AuditPage(BaseModel):
    data: list[AuditEntry]
    next_cursor: str | None
