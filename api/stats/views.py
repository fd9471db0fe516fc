"""`GET /v1/stats/summary` and `GET /v1/stats/trends`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Query

from api.anomalies import service as anomaly_service
from api.anomalies.models import AnomalySummary
from api.common import FromQuery, TenantQuery, ToQuery, bounded
from api.deps import CanReadStats, Ctx, ReadDb
from api.errors import UnprocessableError, error_responses
from api.stats import service
from api.stats.models import RiskyEntity, Summary, TrendBucket, TrendGroup, TrendPoint, Trends

router = APIRouter(prefix="/v1/stats", tags=["stats"])

MAX_BUCKETS: Final = 1000
HIGH_RISK_MINIMUM: Final = 3
HIGH_RISK_DAYS: Final = 7
_BUCKET: Final = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
TzQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_+/-]+$",
        description="IANA time zone for 'today' and day buckets (default: the configured display zone).",
    ),
]


def _zone(ctx: Ctx, tz: str | None) -> ZoneInfo:
    name = tz or ctx.settings.display_timezone
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnprocessableError(
            f"unknown time zone {name!r}",
            details=[{"loc": ["query", "tz"], "message": "not an IANA time zone", "type": "value_error"}],
        ) from None


@router.get(
    "/summary",
    summary="Today's figures for the dashboard",
    response_model=Summary,
    responses=error_responses(401, 403, 422, 429, 503),
)
def summary(
    ctx: Ctx, principal: CanReadStats, connection: ReadDb, tenant_id: TenantQuery = None, tz: TzQuery = None
) -> Summary:
    """Anomalies since local midnight, open cases, the last 10 anomalies, and entities with at
    least 3 anomalies in the last 7 days."""
    zone = _zone(ctx, tz)
    tenants = principal.tenant_scope(tenant_id)
    now = datetime.now(UTC)
    local_midnight = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    day_start = local_midnight.astimezone(UTC)
    day_end = (local_midnight + timedelta(days=1)).astimezone(UTC)  # wall-clock day: DST-safe
    by_severity = service.counts_by_severity(connection=connection, tenants=tenants, start=day_start, end=day_end)
    last, _ = anomaly_service.list_anomalies(
        connection=connection,
        tenants=tenants,
        filters=anomaly_service.AnomalyFilters(),
        sort="-event_time",
        cursor=None,
        limit=10,
    )
    risky = service.risky_entities(
        connection=connection,
        tenants=tenants,
        since=now - timedelta(days=HIGH_RISK_DAYS),
        minimum=HIGH_RISK_MINIMUM,
        limit=20,
    )
    return Summary(
        timezone=zone.key,
        day_start=day_start,
        anomalies_today=sum(by_severity.values()),
        today_by_severity=by_severity,
        open_cases=service.open_case_count(connection=connection, tenants=tenants),
        last_anomalies=[AnomalySummary.model_validate(row) for row in last],
        high_risk_entities=[RiskyEntity.model_validate(row) for row in risky],
        generated_at=now,
    )


@router.get(
    "/trends",
    summary="Anomaly counts over time",
    response_model=Trends,
    responses=error_responses(401, 403, 422, 429, 503),
)
def trends(
    ctx: Ctx,
    principal: CanReadStats,
    connection: ReadDb,
    tenant_id: TenantQuery = None,
    since: FromQuery = None,
    until: ToQuery = None,
    bucket: TrendBucket = "hour",
    group_by: TrendGroup = "severity",
    tz: TzQuery = None,
) -> Trends:
    """Counts per hour or day (days in the display zone) by severity, detector family or detector.
    The window defaults to the last 24 hours (hourly) or 30 days (daily); windows longer than
    1000 buckets are cut to the most recent 1000, and the response states the window used."""
    zone = _zone(ctx, tz)
    tenants = principal.tenant_scope(tenant_id)
    step = _BUCKET[bucket]
    end = bounded(until) or datetime.now(UTC)
    default_span = timedelta(hours=24) if bucket == "hour" else timedelta(days=30)
    start = bounded(since) or end - default_span
    if end - start > step * MAX_BUCKETS:
        start = end - step * MAX_BUCKETS
    points = []
    if start < end:
        points = service.trend_points(
            connection=connection,
            tenants=tenants,
            start=start,
            end=end,
            bucket=bucket,
            group_by=group_by,
            timezone=zone.key,
        )
    return Trends(
        since=start,
        until=end,
        bucket=bucket,
        group_by=group_by,
        timezone=zone.key,
        points=[TrendPoint.model_validate(p) for p in points],
    )
