"""`GET /v1/anomalies` and `GET /v1/anomalies/{anomaly_id}`."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, Response

from api.anomalies import service
from api.anomalies.models import AnomalyDetail, AnomalyPage, AnomalySort, AnomalySummary
from api.common import FromQuery, IdQuery, TenantQuery, ToQuery, bounded, json_response
from api.deps import CanReadAnomalies, ReadDb
from api.errors import NotFoundError, error_responses
from api.paging import DEFAULT_PAGE_SIZE, Cursor, Limit
from core.contracts import AnomalyStatus, DetectorFamily, EntityType, Severity

router = APIRouter(prefix="/v1/anomalies", tags=["anomalies"])


@router.get(
    "",
    summary="List anomalies",
    response_model=AnomalyPage,
    responses=error_responses(400, 401, 403, 422, 429, 503),
)
def list_anomalies(
    principal: CanReadAnomalies,
    connection: ReadDb,
    tenant_id: TenantQuery = None,
    since: FromQuery = None,
    until: ToQuery = None,
    detector_family: DetectorFamily | None = None,
    detector_name: Annotated[str | None, Query(min_length=1, max_length=100, pattern=r"^[^\x00]+$")] = None,
    severity: Annotated[list[Severity] | None, Query(description="Repeat to match any of several.")] = None,
    status: Annotated[list[AnomalyStatus] | None, Query(description="Repeat to match any of several.")] = None,
    entity_type: EntityType | None = None,
    entity_id: IdQuery = None,
    transaction_id: IdQuery = None,
    min_score: Annotated[float | None, Query(ge=0, le=100)] = None,
    max_score: Annotated[float | None, Query(ge=0, le=100)] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            pattern=r"^[^\x00]+$",
            description="Case-insensitive text in transaction/entity id, detector name or reasons.",
        ),
    ] = None,
    sort: Annotated[AnomalySort, Query(description="Order; `-` means descending.")] = "-event_time",
    cursor: Cursor = None,
    limit: Limit = DEFAULT_PAGE_SIZE,
) -> Response:
    """Anomalies visible to the token, newest first by default, with a stable keyset cursor.

    Pages are cut on a unique sort key, so following `next_cursor` never repeats or skips
    a row, even while new anomalies arrive.
    """
    filters = service.AnomalyFilters(
        start=bounded(since),
        end=bounded(until),
        detector_family=detector_family.value if detector_family else None,
        detector_name=detector_name,
        severities=[s.value for s in severity or ()],
        statuses=[s.value for s in status or ()],
        entity_type=entity_type.value if entity_type else None,
        entity_id=entity_id,
        transaction_id=transaction_id,
        min_score=min_score,
        max_score=max_score,
        text=q,
    )
    rows, next_cursor = service.list_anomalies(
        connection=connection,
        tenants=principal.tenant_scope(tenant_id),
        filters=filters,
        sort=sort,
        cursor=cursor,
        limit=limit,
    )
    return json_response(
        AnomalyPage(data=[AnomalySummary.model_validate(row) for row in rows], next_cursor=next_cursor)
    )


@router.get(
    "/{anomaly_id:uuid}",
    summary="One anomaly with reasons and feature snapshot",
    response_model=AnomalyDetail,
    responses=error_responses(401, 403, 404, 422, 429, 503),
)
def get_anomaly(principal: CanReadAnomalies, connection: ReadDb, anomaly_id: Annotated[UUID, Path()]) -> Response:
    row = service.get_anomaly(connection=connection, tenants=principal.tenant_scope(), anomaly_id=anomaly_id)
    if row is None:
        raise NotFoundError("no such anomaly")
    return json_response(AnomalyDetail.model_validate(row))
