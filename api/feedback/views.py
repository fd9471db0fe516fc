"""`GET /v1/metrics/precision`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from api.common import FromQuery, TenantQuery, ToQuery, bounded
from api.deps import CanReadPrecision, ReadDb
from api.errors import error_responses
from api.feedback import service
from api.feedback.models import DetectorPrecision, PrecisionReport

router = APIRouter(prefix="/v1/metrics", tags=["feedback"])


@router.get(
    "/precision",
    summary="Live precision per detector and rule",
    response_model=PrecisionReport,
    responses=error_responses(401, 403, 422, 429, 503),
)
def precision(
    principal: CanReadPrecision,
    connection: ReadDb,
    tenant_id: TenantQuery = None,
    since: FromQuery = None,
    until: ToQuery = None,
    source: Annotated[
        str, Query(min_length=1, max_length=20, pattern=r"^[a-z_]+$", description="Label source to trust.")
    ] = "analyst",
) -> PrecisionReport:
    """For each detector (rules appear as `rule:<id>`), flagged transactions in the window
    (default: the last 30 days of event time), how many are labelled, and the share that
    were confirmed fraud."""
    end = bounded(until) or datetime.now(UTC)
    start = bounded(since) or end - timedelta(days=30)
    rows = service.precision_by_detector(
        connection=connection, tenants=principal.tenant_scope(tenant_id), start=start, end=end, source=source
    )
    return PrecisionReport(
        since=start,
        until=end,
        label_source=source,
        detectors=[DetectorPrecision.model_validate(r) for r in rows],
    )
