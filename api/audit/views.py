"""`GET /v1/audit`: the append-only change history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.audit import service
from api.audit.models import AuditEntry, AuditPage
from api.common import IdQuery, IsoDatetime, TenantQuery, bounded
from api.deps import CanReadAudit, ReadDb
from api.errors import error_responses
from api.paging import DEFAULT_PAGE_SIZE, Cursor, Limit

router = APIRouter(prefix="/v1/audit", tags=["audit"])
_Word = Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[a-z_.]+$")]


@router.get(
    "",
    summary="Audit log",
    response_model=AuditPage,
    responses=error_responses(400, 401, 403, 422, 429, 503),
)
def list_audit(
    principal: CanReadAudit,
    connection: ReadDb,
    tenant_id: TenantQuery = None,
    object_type: _Word = None,
    object_id: IdQuery = None,
    actor: IdQuery = None,
    action: _Word = None,
    since: Annotated[IsoDatetime | None, Query(alias="from", description="Inclusive lower bound.")] = None,
    until: Annotated[IsoDatetime | None, Query(alias="to", description="Exclusive upper bound.")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_PAGE_SIZE,
) -> AuditPage:
    """Newest first. Non-admin tokens see entries of their tenants only; global entries
    (principals, models, all-tenant rules) are visible to admins."""
    rows, next_cursor = service.list_entries(
        connection=connection,
        tenants=principal.tenant_scope(tenant_id),
        include_global=principal.is_admin and tenant_id is None,
        object_type=object_type,
        object_id=object_id,
        actor=actor,
        action=action,
        start=bounded(since),
        end=bounded(until),
        cursor=cursor,
        limit=limit,
    )
    return AuditPage(data=[AuditEntry.model_validate(r) for r in rows], next_cursor=next_cursor)
