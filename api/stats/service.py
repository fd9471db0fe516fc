"""Dashboard aggregates over anomalies and cases."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, DateTime, func, literal, literal_column, select

from api.cases.service import ACTIVE_STATUSES
from core.schema import anomalies, cases


def _scoped(query: Any, column: Any, tenants: Sequence[str] | None) -> Any:
    return query if tenants is None else query.where(column.in_(list(tenants)))


def counts_by_severity(
    *, connection: Connection, tenants: Sequence[str] | None, start: datetime, end: datetime
) -> dict[str, int]:
    a = anomalies.c
    query = _scoped(
        select(a.severity, func.count()).where(a.event_time >= start, a.event_time < end).group_by(a.severity),
        a.tenant_id,
        tenants,
    )
    counts = {"info": 0, "warning": 0, "critical": 0}
    for severity, count in connection.execute(query):
        counts[severity] = count
    return counts


def open_case_count(*, connection: Connection, tenants: Sequence[str] | None) -> int:
    query = _scoped(
        select(func.count()).select_from(cases).where(cases.c.status.in_(ACTIVE_STATUSES)), cases.c.tenant_id, tenants
    )
    return int(connection.execute(query).scalar_one())


def risky_entities(
    *, connection: Connection, tenants: Sequence[str] | None, since: datetime, minimum: int, limit: int
) -> list[dict[str, Any]]:
    a = anomalies.c
    count = func.count()
    query = _scoped(
        select(
            a.tenant_id,
            a.entity_type,
            a.entity_id,
            count.label("anomaly_count"),
            func.max(a.score).label("max_score"),
            func.max(a.event_time).label("last_event_time"),
        )
        .where(a.event_time >= since)
        .group_by(a.tenant_id, a.entity_type, a.entity_id)
        .having(count >= minimum)
        .order_by(count.desc(), func.max(a.event_time).desc())
        .limit(limit),
        a.tenant_id,
        tenants,
    )
    return [dict(row._mapping) for row in connection.execute(query)]


def trend_points(
    *,
    connection: Connection,
    tenants: Sequence[str] | None,
    start: datetime,
    end: datetime,
    bucket: str,
    group_by: str,
    timezone: str,
) -> list[dict[str, Any]]:
    """Counts per local-time bucket (so a "day" is a day in the display zone) and group."""
    a = anomalies.c
    zone = literal(timezone)
    local = func.timezone(zone, a.event_time)
    bucket_start = func.timezone(zone, func.date_trunc(literal(bucket), local), type_=DateTime(timezone=True))
    group = {
        "severity": a.severity,
        "family": a.detector_family,
        "detector": a.detector_family + literal(":") + a.detector_name,
    }[group_by]
    query = _scoped(
        select(bucket_start.label("bucket_start"), group.label("group"), func.count().label("count"))
        .where(a.event_time >= start, a.event_time < end)
        # By position: the bucket expression carries bound parameters, and PostgreSQL would not
        # recognise a second copy of it in GROUP BY as the same expression.
        .group_by(literal_column("1"), literal_column("2"))
        .order_by(literal_column("1"), literal_column("2")),
        a.tenant_id,
        tenants,
    )
    return [dict(row._mapping) for row in connection.execute(query)]
