"""`GET /v1/system/status`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.deps import CanReadSystem, Ctx
from api.errors import UnavailableError, error_responses
from api.system.models import ConsumerLagView, DlqView, ServiceState, ServiceView, SystemStatusView, ThroughputView
from api.system.service import GroupLag, Probe, StatusReport

router = APIRouter(tags=["operations"])


def _consumer(group: GroupLag | None) -> ConsumerLagView | None:
    if group is None:
        return None
    return ConsumerLagView(
        group=group.group,
        topics=list(group.topics),
        state=group.state,
        members=group.members,
        lag=group.lag,
        partitions=group.partitions,
    )


def _state(probe: Probe | None, group: GroupLag | None) -> ServiceState:
    if probe is not None and probe.status in ("ready", "not_ready"):
        return "ready" if probe.status == "ready" else "not_ready"
    if group is not None and group.joins_group and group.members is not None:
        return "running" if group.members > 0 else "down"
    return "unknown"


def _services(report: StatusReport) -> list[ServiceView]:
    probes = {p.service: p for p in report.probes}
    groups = {g.service: g for g in report.groups}
    names = [*dict.fromkeys([*groups, *probes])]
    views = [
        ServiceView(
            name=name,
            status=_state(probes.get(name), groups.get(name)),
            checks=probes[name].checks if name in probes else {},
            consumer=_consumer(groups.get(name)),
        )
        for name in names
    ]
    # This process answers, so the API is up; its own checks are the scorer's models.
    views.append(ServiceView(name="api", status="ready", checks={}, consumer=None))
    return views


@router.get(
    "/v1/system/status",
    summary="Pipeline status: services, consumer lag, DLQ depth, throughput",
    response_model=SystemStatusView,
    responses=error_responses(401, 403, 429, 503),
)
async def system_status(ctx: Ctx, principal: CanReadSystem) -> SystemStatusView:
    """For operators and the dashboard's System health page (admin and analyst). Lag, DLQ depth and
    transactions/s are pipeline-wide; anomalies in the last minute count only the token's tenants.
    Cached for about 2 s."""
    if ctx.status is None:
        raise UnavailableError("system status is not configured in this API process", code="port_unavailable")
    report = await run_in_threadpool(ctx.status.report, tenants=principal.tenant_scope())
    return SystemStatusView(
        generated_at=report.generated_at,
        kafka_reachable=report.kafka_reachable,
        services=_services(report),
        dlq=DlqView(topic=report.dlq_topic, depth=report.dlq_depth),
        throughput=ThroughputView(
            transactions_per_second=report.transactions_per_second,
            anomalies_last_minute=report.anomalies_last_minute,
        ),
        degraded_detectors=report.degraded,
    )
