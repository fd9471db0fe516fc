"""`/v1/cases`: per-transaction cases and per-entity groups; status, assignee and notes."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, Response

from api.anomalies import service as anomaly_service
from api.anomalies.models import AnomalySummary
from api.cases import service
from api.cases.models import (
    CaseDetail,
    CasePage,
    CaseSort,
    CaseStatus,
    CaseSummary,
    CaseUpdate,
    EntityCases,
    EntityGroup,
    EntityGroupPage,
    Label,
    Note,
)
from api.common import FromQuery, IdQuery, TenantQuery, ToQuery, bounded, json_response
from api.deps import CanReadCases, CanWriteCases, ReadDb, WriteDb
from api.errors import NotFoundError, error_responses
from api.paging import DEFAULT_PAGE_SIZE, Cursor, Limit
from core.contracts import EntityType, Severity

router = APIRouter(prefix="/v1/cases", tags=["cases"])
_EntityId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]


@router.get(
    "",
    summary="List cases (one per transaction)",
    response_model=CasePage,
    responses=error_responses(400, 401, 403, 422, 429, 503),
)
def list_cases(
    principal: CanReadCases,
    connection: ReadDb,
    tenant_id: TenantQuery = None,
    status: Annotated[list[CaseStatus] | None, Query(description="Repeat to match any of several.")] = None,
    assignee: IdQuery = None,
    severity: Annotated[list[Severity] | None, Query(description="Highest severity among the anomalies.")] = None,
    entity_type: EntityType | None = None,
    entity_id: IdQuery = None,
    since: FromQuery = None,
    until: ToQuery = None,
    sort: CaseSort = "-event_time",
    cursor: Cursor = None,
    limit: Limit = DEFAULT_PAGE_SIZE,
) -> Response:
    """The analyst queue: cases visible to the token, filtered, with a stable keyset cursor."""
    rows, next_cursor = service.list_cases(
        connection=connection,
        tenants=principal.tenant_scope(tenant_id),
        statuses=[s.value for s in status or ()],
        assignee=assignee,
        severities=[s.value for s in severity or ()],
        entity_type=entity_type.value if entity_type else None,
        entity_id=entity_id,
        start=bounded(since),
        end=bounded(until),
        sort=sort,
        cursor=cursor,
        limit=limit,
    )
    return json_response(CasePage(data=[CaseSummary.model_validate(r) for r in rows], next_cursor=next_cursor))


@router.get(
    "/entities",
    summary="Cases grouped per entity",
    response_model=EntityGroupPage,
    responses=error_responses(400, 401, 403, 422, 429, 503),
)
def list_entity_groups(
    principal: CanReadCases,
    connection: ReadDb,
    tenant_id: TenantQuery = None,
    entity_type: EntityType | None = None,
    active: Annotated[bool, Query(description="Only entities with open or investigating cases.")] = False,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_PAGE_SIZE,
) -> EntityGroupPage:
    """Accounts, cards, merchants, devices and IPs with cases, most recently active first."""
    rows, next_cursor = service.entity_groups(
        connection=connection,
        tenants=principal.tenant_scope(tenant_id),
        entity_type=entity_type.value if entity_type else None,
        active_only=active,
        cursor=cursor,
        limit=limit,
    )
    return EntityGroupPage(data=[EntityGroup.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/entities/{entity_type}/{entity_id}",
    summary="One entity's cases",
    response_model=EntityCases,
    responses=error_responses(401, 403, 404, 422, 429, 503),
)
def get_entity_cases(
    principal: CanReadCases,
    connection: ReadDb,
    entity_type: EntityType,
    entity_id: _EntityId,
    tenant_id: TenantQuery = None,
    limit: Limit = DEFAULT_PAGE_SIZE,
) -> EntityCases:
    tenants = principal.tenant_scope(tenant_id)
    groups, _ = service.entity_groups(
        connection=connection, tenants=tenants, entity_type=entity_type.value, entity_id=entity_id, limit=100
    )
    if not groups:
        raise NotFoundError("no cases for this entity")
    rows, _ = service.list_cases(
        connection=connection,
        tenants=tenants,
        entity_type=entity_type.value,
        entity_id=entity_id,
        limit=limit,
    )
    return EntityCases(
        groups=[EntityGroup.model_validate(g) for g in groups],
        cases=[CaseSummary.model_validate(r) for r in rows],
    )


def _detail(connection: ReadDb, row: dict[str, object]) -> CaseDetail:
    tenant_id, transaction_id = str(row["tenant_id"]), str(row["transaction_id"])
    verdicts = anomaly_service.anomalies_of_transaction(
        connection=connection, tenant_id=tenant_id, transaction_id=transaction_id
    )
    notes = service.notes_of(connection=connection, case_id=row["case_id"])  # type: ignore[arg-type]
    label = service.analyst_label(connection=connection, tenant_id=tenant_id, transaction_id=transaction_id)
    return CaseDetail.model_validate(
        {
            **row,
            "anomalies": [AnomalySummary.model_validate(a) for a in verdicts],
            "notes": [Note.model_validate(n) for n in notes],
            "label": Label.model_validate(label) if label else None,
        }
    )


@router.get(
    "/{case_id:uuid}",
    summary="One case with every detector's verdict",
    response_model=CaseDetail,
    responses=error_responses(401, 403, 404, 422, 429, 503),
)
def get_case(principal: CanReadCases, connection: ReadDb, case_id: UUID) -> CaseDetail:
    row = service.get_case(connection=connection, tenants=principal.tenant_scope(), case_id=case_id)
    if row is None:
        raise NotFoundError("no such case")
    return _detail(connection, row)


@router.patch(
    "/{case_id:uuid}",
    summary="Change status, assignee or add a note",
    response_model=CaseDetail,
    responses=error_responses(401, 403, 404, 413, 422, 429, 503),
)
def update_case(principal: CanWriteCases, connection: WriteDb, case_id: UUID, change: CaseUpdate) -> CaseDetail:
    """Statuses `confirmed_fraud`, `false_positive` and `expected` record the analyst's label for
    training; moving back to `open`/`investigating` withdraws it. Every change is audited."""
    row = service.update_case(
        connection=connection,
        tenants=principal.tenant_scope(),
        case_id=case_id,
        change=change,
        actor=principal.principal_id,
    )
    if row is None:
        raise NotFoundError("no such case")
    return _detail(connection, row)
