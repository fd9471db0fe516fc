"""`GET /v1/alerts`, `GET/POST /v1/silences`, `POST /v1/silences/{silence_id}:expire`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query

from api.alerts import service
from api.alerts.models import NotificationPage, NotificationView, SilenceIn, SilenceList, SilenceView
from api.common import FromQuery, IdQuery, TenantQuery, ToQuery, bounded, in_range
from api.deps import CanReadAlerts, CanWriteSilences, ReadDb, WriteDb
from api.errors import NotFoundError, error_responses
from api.paging import DEFAULT_PAGE_SIZE, Cursor, Limit
from core.contracts import Severity

router = APIRouter(tags=["alerts"])
NotificationStatus = Literal["pending", "sent", "failed", "suppressed"]


@router.get(
    "/v1/alerts",
    summary="Notification log",
    response_model=NotificationPage,
    responses=error_responses(400, 401, 403, 422, 429, 503),
)
def list_alerts(
    principal: CanReadAlerts,
    connection: ReadDb,
    tenant_id: TenantQuery = None,
    status: Annotated[list[NotificationStatus] | None, Query(description="Repeat to match any of several.")] = None,
    receiver: IdQuery = None,
    severity: Annotated[list[Severity] | None, Query()] = None,
    since: FromQuery = None,
    until: ToQuery = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_PAGE_SIZE,
) -> NotificationPage:
    """Notifications the alerting service sent (or tried to), newest first. System alerts
    (no tenant) are visible to admins only."""
    rows, next_cursor = service.list_notifications(
        connection=connection,
        tenants=principal.tenant_scope(tenant_id),
        statuses=list(status or ()),
        receiver=receiver,
        severities=[s.value for s in severity or ()],
        start=bounded(since),
        end=bounded(until),
        cursor=cursor,
        limit=limit,
    )
    return NotificationPage(data=[NotificationView.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/v1/silences",
    summary="List silences",
    response_model=SilenceList,
    responses=error_responses(401, 403, 422, 429, 503),
)
def list_silences(
    principal: CanReadAlerts,
    connection: ReadDb,
    tenant_id: TenantQuery = None,
    active: Annotated[bool, Query(description="Only silences in force now.")] = False,
) -> SilenceList:
    rows = service.list_silences(
        connection=connection, tenants=principal.tenant_scope(tenant_id), active_only=active, now=datetime.now(UTC)
    )
    return SilenceList(data=[SilenceView.model_validate(r) for r in rows])


@router.post(
    "/v1/silences",
    summary="Create a silence",
    status_code=201,
    response_model=SilenceView,
    responses=error_responses(401, 403, 413, 422, 429, 503),
)
def create_silence(principal: CanWriteSilences, connection: WriteDb, silence: SilenceIn) -> SilenceView:
    """Audited. A tenant's silence only mutes that tenant's alerts; only admins silence all tenants."""
    tenant_id = silence.tenant_id
    if tenant_id is None and not principal.is_admin:
        tenant_id = principal.single_tenant(None)
    elif tenant_id is not None:
        principal.tenant_scope(tenant_id)
    now = datetime.now(UTC)
    row = service.create_silence(
        connection=connection,
        tenant_id=tenant_id,
        matchers=[m.model_dump() for m in silence.matchers],
        starts_at=bounded(silence.starts_at) or now,
        ends_at=in_range(silence.ends_at),
        comment=silence.comment,
        actor=principal.principal_id,
        now=now,
    )
    return SilenceView.model_validate(row)


@router.post(
    "/v1/silences/{silence_id:uuid}:expire",
    summary="End a silence now",
    response_model=SilenceView,
    responses=error_responses(401, 403, 404, 422, 429, 503),
)
def expire_silence(principal: CanWriteSilences, connection: WriteDb, silence_id: UUID) -> SilenceView:
    """Idempotent: expiring an ended silence returns it unchanged. Audited."""
    row = service.expire_silence(
        connection=connection,
        tenants=principal.tenant_scope(),
        silence_id=silence_id,
        actor=principal.principal_id,
        now=datetime.now(UTC),
    )
    if row is None:
        raise NotFoundError("no such silence")
    return SilenceView.model_validate(row)
