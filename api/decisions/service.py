"""Decisions from scores: thresholds are applied here, once, for both paths."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select

from api.decisions.models import Decision
from api.transactions.service import sole_tenant
from core.schema import anomalies, transactions
from core.settings import Settings


def decide(score: float, settings: Settings) -> Decision:
    if score >= settings.decision_decline_threshold:
        return "decline"
    if score >= settings.decision_review_threshold:
        return "review"
    return "approve"


def decision_rows(
    *, connection: Connection, tenants: Sequence[str] | None, transaction_id: str
) -> tuple[str | None, bool, list[dict[str, Any]]]:
    """(tenant, stored?, anomalies) of a transaction visible to the caller; tenant None = unknown."""
    scope = [anomalies.c.tenant_id.in_(list(tenants))] if tenants is not None else []
    found = [
        dict(row._mapping)
        for row in connection.execute(
            select(
                anomalies.c.tenant_id,
                anomalies.c.detector_family,
                anomalies.c.detector_name,
                anomalies.c.detector_version,
                anomalies.c.score,
                anomalies.c.severity,
                anomalies.c.event_time,
                anomalies.c.detected_at,
                anomalies.c.reasons,
            )
            .where(anomalies.c.transaction_id == transaction_id, *scope)
            .order_by(anomalies.c.tenant_id, anomalies.c.score.desc())
        )
    ]
    tx_scope = [transactions.c.tenant_id.in_(list(tenants))] if tenants is not None else []
    stored = set(
        connection.execute(
            select(transactions.c.tenant_id).where(transactions.c.transaction_id == transaction_id, *tx_scope)
        ).scalars()
    )
    # 409 when the id is several tenants' (ids are unique per tenant only, ADR 0013).
    tenant = sole_tenant(transaction_id=transaction_id, tenants=stored | {row["tenant_id"] for row in found})
    if tenant is None:
        return None, False, []
    return tenant, tenant in stored, [row for row in found if row["tenant_id"] == tenant]
