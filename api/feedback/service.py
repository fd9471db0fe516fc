"""Precision per detector from labels joined to anomalies on (tenant, transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, select

from core.schema import anomalies, labels


def precision_by_detector(
    *,
    connection: Connection,
    tenants: Sequence[str] | None,
    start: datetime,
    end: datetime,
    source: str,
) -> list[dict[str, Any]]:
    a, lab = anomalies.c, labels.c
    joined = anomalies.outerjoin(
        labels,
        and_(lab.tenant_id == a.tenant_id, lab.transaction_id == a.transaction_id, lab.source == source),
    )
    # Distinct (tenant, transaction) pairs: several versions of one detector must not count twice.
    pair = func.concat(a.tenant_id, "\x1f", a.transaction_id)
    query = (
        select(
            a.detector_family,
            a.detector_name,
            func.count(pair.distinct()).label("flagged"),
            func.count(pair.distinct()).filter(lab.label.is_not(None)).label("labelled"),
            func.count(pair.distinct()).filter(lab.label == "fraud").label("fraud"),
        )
        .select_from(joined)
        .where(a.event_time >= start, a.event_time < end)
        .group_by(a.detector_family, a.detector_name)
        .order_by(a.detector_family, a.detector_name)
    )
    if tenants is not None:
        query = query.where(a.tenant_id.in_(list(tenants)))
    rows = []
    for row in connection.execute(query):
        item = dict(row._mapping)
        item["not_fraud"] = item["labelled"] - item["fraud"]
        item["precision"] = item["fraud"] / item["labelled"] if item["labelled"] else None
        rows.append(item)
    return rows
