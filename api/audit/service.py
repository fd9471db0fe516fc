"""Audit entries (the table refuses UPDATE/DELETE by trigger) and their listing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select

from api.paging import cursor_int, decode_cursor, encode_cursor
from core.schema import audit_log


def record(
    *,
    connection: Connection,
    actor: str,
    tenant_id: str | None,
    action: str,
    object_type: str,
    object_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one entry in the caller's transaction, so the change and its audit commit together."""
    connection.execute(
        insert(audit_log).values(
            actor=actor,
            tenant_id=tenant_id,
            action=action,
            object_type=object_type,
            object_id=object_id,
            details=details or {},
        )
    )


def list_entries(
    *,
    connection: Connection,
    tenants: Sequence[str] | None,
    include_global: bool,
    object_type: str | None = None,
    object_id: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    cursor: str | None = None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset-paginated on audit_id."""
    conditions = []
    if tenants is not None:
        scoped = audit_log.c.tenant_id.in_(list(tenants))
        conditions.append(or_(scoped, audit_log.c.tenant_id.is_(None)) if include_global else scoped)
    if object_type is not None:
        conditions.append(audit_log.c.object_type == object_type)
    if object_id is not None:
        conditions.append(audit_log.c.object_id == object_id)
    if actor is not None:
        conditions.append(audit_log.c.actor == actor)
    if action is not None:
        conditions.append(audit_log.c.action == action)
    if start is not None:
        conditions.append(audit_log.c.at >= start)
    if end is not None:
        conditions.append(audit_log.c.at < end)
    if cursor is not None:
        (after,) = decode_cursor(cursor, kind="audit", arity=1)
        conditions.append(audit_log.c.audit_id < cursor_int(after))
    query = select(audit_log).where(and_(True, *conditions)).order_by(audit_log.c.audit_id.desc()).limit(limit + 1)
    rows = [dict(row._mapping) for row in connection.execute(query)]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor("audit", [rows[-1]["audit_id"]])
    return rows, next_cursor
