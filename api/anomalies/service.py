"""Anomaly queries: keyset pagination that stays fast at millions of rows.

The order is (event_time, anomaly_id) or (score, event_time, anomaly_id), both
unique, so pages never skip or repeat rows. With one tenant in scope the index
`anomalies_tenant_time` serves the order directly; a token with several tenants
gets one ordered, limited index scan per tenant merged by a UNION ALL (instead of
sorting every matching row); an admin without a tenant filter uses `anomalies_time`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Double,
    Select,
    Text,
    and_,
    cast,
    literal,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import UUID as PG_UUID

from api.paging import cursor_datetime, cursor_float, cursor_uuid, decode_cursor, encode_cursor
from core.schema import anomalies, anomaly_features

# Beyond this many tenants the per-tenant UNION ALL costs more than it saves.
_MAX_UNION_TENANTS: Final = 32
_SUMMARY_COLUMNS: Final = list(anomalies.c)
# An anomaly's feature snapshot: stored once per transaction (ADR 0011), whose id is its tenant's own (ADR 0013).
SNAPSHOT_OF_ANOMALY: Final = and_(
    anomaly_features.c.transaction_id == anomalies.c.transaction_id,
    anomaly_features.c.tenant_id == anomalies.c.tenant_id,
    anomaly_features.c.event_time == anomalies.c.event_time,
)


@dataclass(frozen=True, slots=True)
class AnomalyFilters:
    start: datetime | None = None
    end: datetime | None = None
    detector_family: str | None = None
    detector_name: str | None = None
    severities: Sequence[str] = ()
    statuses: Sequence[str] = ()
    entity_type: str | None = None
    entity_id: str | None = None
    transaction_id: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    text: str | None = None


def like_pattern(text: str) -> str:
    """A case-insensitive substring pattern with LIKE wildcards escaped."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _conditions(filters: AnomalyFilters) -> list[ColumnElement[bool]]:
    a = anomalies.c
    conditions: list[ColumnElement[bool]] = []
    if filters.start is not None:
        conditions.append(a.event_time >= filters.start)
    if filters.end is not None:
        conditions.append(a.event_time < filters.end)
    if filters.detector_family is not None:
        conditions.append(a.detector_family == filters.detector_family)
    if filters.detector_name is not None:
        conditions.append(a.detector_name == filters.detector_name)
    if filters.severities:
        conditions.append(a.severity.in_(list(filters.severities)))
    if filters.statuses:
        conditions.append(a.status.in_(list(filters.statuses)))
    if filters.entity_type is not None:
        conditions.append(a.entity_type == filters.entity_type)
    if filters.entity_id is not None:
        conditions.append(a.entity_id == filters.entity_id)
    if filters.transaction_id is not None:
        conditions.append(a.transaction_id == filters.transaction_id)
    if filters.min_score is not None:
        conditions.append(a.score >= filters.min_score)
    if filters.max_score is not None:
        conditions.append(a.score <= filters.max_score)
    if filters.text:
        pattern = like_pattern(filters.text)
        conditions.append(
            or_(
                a.transaction_id.ilike(pattern, escape="\\"),
                a.entity_id.ilike(pattern, escape="\\"),
                a.detector_name.ilike(pattern, escape="\\"),
                cast(a.reasons, Text).ilike(pattern, escape="\\"),
            )
        )
    return conditions


def _sort_columns(sort: str, source: Any) -> list[Any]:
    columns = [source.c.event_time, source.c.anomaly_id]
    if sort.lstrip("-") == "score":
        columns = [source.c.score, *columns]
    return columns


def _after(sort: str, cursor: str) -> ColumnElement[bool]:
    by_score = sort.lstrip("-") == "score"
    values = decode_cursor(cursor, kind=f"anomalies{sort}", arity=3 if by_score else 2)
    bound: list[Any] = []
    if by_score:
        bound.append(literal(cursor_float(values.pop(0)), Double))
    bound.append(literal(cursor_datetime(values[0]), DateTime(timezone=True)))
    bound.append(literal(cursor_uuid(values[1]), PG_UUID(as_uuid=True)))
    key = tuple_(*_sort_columns(sort, anomalies))
    return key < tuple_(*bound) if sort.startswith("-") else key > tuple_(*bound)


def _ordered(query: Select[Any], sort: str, source: Any) -> Select[Any]:
    columns = _sort_columns(sort, source)
    return query.order_by(*(c.desc() if sort.startswith("-") else c.asc() for c in columns))


def list_anomalies(
    *,
    connection: Connection,
    tenants: Sequence[str] | None,
    filters: AnomalyFilters,
    sort: str,
    cursor: str | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page in `sort` order for the tenants in scope (None = all) and the cursor of the next."""
    conditions = _conditions(filters)
    if cursor is not None:
        conditions.append(_after(sort, cursor))
    base = select(*_SUMMARY_COLUMNS)
    if tenants is not None and len(tenants) == 0:
        return [], None
    if tenants is not None and 1 < len(tenants) <= _MAX_UNION_TENANTS:
        parts = [
            _ordered(base.where(anomalies.c.tenant_id == tenant, *conditions), sort, anomalies).limit(limit + 1)
            for tenant in tenants
        ]
        merged = union_all(*parts).subquery("scoped")
        query = _ordered(select(merged), sort, merged).limit(limit + 1)
    else:
        if tenants is not None:
            conditions.append(
                anomalies.c.tenant_id == tenants[0] if len(tenants) == 1 else anomalies.c.tenant_id.in_(tenants)
            )
        query = _ordered(base.where(*conditions), sort, anomalies).limit(limit + 1)
    rows = [dict(row._mapping) for row in connection.execute(query)]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        key = [last["event_time"], last["anomaly_id"]]
        if sort.lstrip("-") == "score":
            key = [last["score"], *key]
        next_cursor = encode_cursor(f"anomalies{sort}", key)
    return rows, next_cursor


def get_anomaly(*, connection: Connection, tenants: Sequence[str] | None, anomaly_id: UUID) -> dict[str, Any] | None:
    """One anomaly with the feature snapshot of its transaction (stored once per transaction, ADR 0011)."""
    joined = anomalies.outerjoin(anomaly_features, SNAPSHOT_OF_ANOMALY)
    query = (
        select(anomalies, anomaly_features.c.features).select_from(joined).where(anomalies.c.anomaly_id == anomaly_id)
    )
    if tenants is not None:
        query = query.where(anomalies.c.tenant_id.in_(list(tenants)))
    row = connection.execute(query.limit(1)).first()
    if row is None:
        return None
    found = dict(row._mapping)
    found["features"] = found["features"] or {}  # no snapshot stored (the detector saw no features)
    return found


def anomalies_of_transaction(*, connection: Connection, tenant_id: str, transaction_id: str) -> list[dict[str, Any]]:
    """Every detector's verdict on one transaction, highest score first."""
    query = (
        select(anomalies)
        .where(and_(anomalies.c.tenant_id == tenant_id, anomalies.c.transaction_id == transaction_id))
        .order_by(anomalies.c.score.desc(), anomalies.c.detector_name)
    )
    return [dict(row._mapping) for row in connection.execute(query)]
