"""`POST /v1/score` and `GET /v1/decisions/{transaction_id}`."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool

from api.common import TenantQuery
from api.decisions import service
from api.decisions.models import AnomalyBrief, DecisionView, ScoreResponse, Thresholds, VerdictView
from api.deps import CanReadDecisions, CanScore, Ctx, ReadDb
from api.errors import NotFoundError, UnavailableError, UnprocessableError, error_responses
from api.transactions.service import check_tenants, validate_item
from api.transactions.views import read_json
from core.contracts import Reason
from core.errors import VigilError

log = logging.getLogger(__name__)

router = APIRouter(tags=["decisions"])
_Id = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]
_MAX_REASONS = 5


def _thresholds(ctx: Ctx) -> Thresholds:
    return Thresholds(review=ctx.settings.decision_review_threshold, decline=ctx.settings.decision_decline_threshold)


@router.post(
    "/v1/score",
    summary="Score one transaction now",
    response_model=ScoreResponse,
    responses=error_responses(401, 403, 413, 415, 422, 429, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TransactionSubmission"}}},
        }
    },
)
async def score(request: Request, ctx: Ctx, principal: CanScore) -> ScoreResponse:
    """Runs the current features and the statistical, rule and ML detectors on one transaction
    without waiting for the stream, and answers approve / review / decline by the configured
    thresholds. Nothing is stored: submit the transaction with `POST /v1/transactions` as well."""
    body = await read_json(request)
    check_tenants([body], principal)
    outcome = validate_item(0, body, principal)
    if outcome.transaction is None:
        raise UnprocessableError(
            "the transaction is invalid",
            details=[{**e, "loc": ["body", *e["loc"]]} for e in outcome.errors],
        )
    scorer = ctx.ports.require_scorer()
    transaction = outcome.transaction
    try:
        # CPU only when the scorer can answer from memory: cheaper on the loop than a worker-thread hop.
        result = scorer.score_now(transaction)
        if result is None:
            result = await run_in_threadpool(scorer.score, transaction)
    except VigilError as exc:
        log.warning("scoring failed", extra={"error": str(exc)})
        raise UnavailableError(f"scoring failed: {exc}", code="scoring_failed") from None
    value = min(100.0, max(0.0, float(result.score)))
    reasons: list[tuple[float, Reason]] = []
    for verdict in result.verdicts:
        for reason in verdict.reasons:
            weight = (verdict.score or 0.0) * (reason.contribution if reason.contribution is not None else 1.0)
            reasons.append((weight, reason))
    reasons.sort(key=lambda pair: -pair[0])
    return ScoreResponse(
        transaction_id=transaction.transaction_id,
        tenant_id=transaction.tenant_id,
        score=value,
        decision=service.decide(value, ctx.settings),
        thresholds=_thresholds(ctx),
        reasons=[reason for _, reason in reasons[:_MAX_REASONS]],
        detectors=[
            VerdictView(
                detector_family=v.family,
                detector_name=v.name,
                detector_version=v.version,
                score=v.score,
                severity=v.severity,
                reasons=v.reasons,
            )
            for v in result.verdicts
        ],
        degraded=list(result.degraded),
        scored_at=datetime.now(UTC),
    )


@router.get(
    "/v1/decisions/{transaction_id}",
    summary="The stream's decision on one of your transactions",
    response_model=DecisionView,
    responses=error_responses(401, 403, 404, 409, 422, 429, 503),
)
def get_decision(
    ctx: Ctx,
    principal: CanReadDecisions,
    connection: ReadDb,
    transaction_id: _Id,
    tenant_id: TenantQuery = None,
) -> DecisionView:
    """Anomalies recorded so far for a transaction of the token's tenants, summarised with the
    decision their highest score maps to. Carries no case status, notes, assignee or labels."""
    tenant, stored, rows = service.decision_rows(
        connection=connection, tenants=principal.tenant_scope(tenant_id), transaction_id=transaction_id
    )
    if tenant is None:
        raise NotFoundError("no such transaction (or not processed yet)")
    top = max((float(r["score"]) for r in rows), default=0.0)
    return DecisionView(
        transaction_id=transaction_id,
        tenant_id=tenant,
        known=stored,
        score=top,
        decision=service.decide(top, ctx.settings),
        thresholds=_thresholds(ctx),
        anomalies=[
            AnomalyBrief(
                detector_family=r["detector_family"],
                detector_name=r["detector_name"],
                detector_version=r["detector_version"],
                score=r["score"],
                severity=r["severity"],
                event_time=r["event_time"],
                detected_at=r["detected_at"],
                reasons=[str(reason.get("text", "")) for reason in r["reasons"] if isinstance(reason, dict)],
            )
            for r in rows
        ],
    )
