"""Notification log reads; silence create/expire with audit entries (same semantics as alerting/)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update

from api.audit import service as audit
from api.errors import UnprocessableError
from api.paging import cursor_int, decode_cursor, encode_cursor
from core.schema import notifications, silences


def list_notifications(
    *,
    connection: Connection,
    tenants: Sequence[str] | None,
    statuses: Sequence[str],
    receiver: str | None,
    severities: Sequence[str],
    start: datetime | None,
    end: datetime | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    n = notifications.c
    conditions: list[Any] = []
    if tenants is not None:
        conditions.append(n.tenant_id.in_(list(tenants)))
    if statuses:
        conditions.append(n.status.in_(list(statuses)))
    if receiver is not None:
        conditions.append(n.receiver == receiver)
    if severities:
        conditions.append(n.severity.in_(list(severities)))
    if start is not None:
        conditions.append(n.created_at >= start)
    if end is not None:
        conditions.append(n.created_at < end)
    if cursor is not None:
        (after,) = decode_cursor(cursor, kind="alerts", arity=1)
        conditions.append(n.notification_id < cursor_int(after))
    query = select(notifications).where(and_(True, *conditions)).order_by(n.notification_id.desc()).limit(limit + 1)
    rows = [dict(row._mapping) for row in connection.execute(query)]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor("alerts", [rows[-1]["notification_id"]])
    return rows, next_cursor


def _view(row: Any, now: datetime) -> dict[str, Any]:
    item = dict(row._mapping)
    item["active"] = item["expired_at"] is None and item["starts_at"] <= now < item["ends_at"]
    return item


def list_silences(
    *, connection: Connection, tenants: Sequence[str] | None, active_only: bool, now: datetime
) -> list[dict[str, Any]]:
    s = silences.c
    query = select(silences).order_by(s.created_at.desc(), s.silence_id)
    if tenants is not None:
        query = query.where(s.tenant_id.in_(list(tenants)))
    if active_only:
        query = query.where(s.expired_at.is_(None), s.starts_at <= now, s.ends_at > now)
    return [_view(row, now) for row in connection.execute(query.limit(1000))]


def create_silence(
    *,
    connection: Connection,
    tenant_id: str | None,
    matchers: list[dict[str, str]],
    starts_at: datetime,
    ends_at: datetime,
    comment: str,
    actor: str,
    now: datetime,
) -> dict[str, Any]:
    if ends_at <= starts_at:
        raise UnprocessableError(
            "a silence must end after it starts",
            details=[{"loc": ["body", "ends_at"], "message": "must be after starts_at", "type": "value_error"}],
        )
    if ends_at <= now:
        raise UnprocessableError(
            "a silence that ends in the past would silence nothing",
            details=[{"loc": ["body", "ends_at"], "message": "must be in the future", "type": "value_error"}],
        )
    silence_id = uuid.uuid4()
    row = connection.execute(
        insert(silences)
        .values(
            silence_id=silence_id,
            tenant_id=tenant_id,
            matchers=matchers,
            starts_at=starts_at,
            ends_at=ends_at,
            created_by=actor,
            comment=comment,
            created_at=now,
        )
        .returning(silences)
    ).one()
    audit.record(
        connection=connection,
        actor=actor,
        tenant_id=tenant_id,
        action="silence.create",
        object_type="silence",
        object_id=str(silence_id),
        details={
            "matchers": [f"{m['label']}{m['op']}{m['value']!r}" for m in matchers],
            "starts_at": starts_at.isoformat(),
            "ends_at": ends_at.isoformat(),
            "comment": comment,
        },
    )
    return _view(row, now)


def expire_silence(
    *, connection: Connection, tenants: Sequence[str] | None, silence_id: uuid.UUID, actor: str, now: datetime
) -> dict[str, Any] | None:
    """End a silence now (idempotent: an ended silence is returned unchanged); None if not visible."""
    condition = silences.c.silence_id == silence_id
    if tenants is not None:
        condition = and_(condition, silences.c.tenant_id.in_(list(tenants)))
    row = connection.execute(select(silences).where(condition).with_for_update()).first()
    if row is None:
        return None
    current = row._mapping
    if current["expired_at"] is not None or current["ends_at"] <= now:
        return _view(row, now)
    updated = connection.execute(
        update(silences)
        .where(silences.c.silence_id == silence_id)
        .values(expired_at=now, expired_by=actor)
        .returning(silences)
    ).one()
    audit.record(
        connection=connection,
        actor=actor,
        tenant_id=current["tenant_id"],
        action="silence.expire",
        object_type="silence",
        object_id=str(silence_id),
        details={},
    )
    return _view(updated, now)


__all__ = ["create_silence", "expire_silence", "list_notifications", "list_silences"]
