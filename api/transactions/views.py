"""`/v1/transactions` (ingestion and lookup) and `/v1/entities/{type}/{id}/timeline`."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool

from api.anomalies.models import AnomalySummary
from api.cases.models import CaseSummary
from api.common import TenantQuery
from api.deps import CanIngest, CanReadTransactions, Ctx, ReadDb
from api.errors import NotFoundError, UnprocessableError, UnsupportedMediaTypeError, error_responses
from api.paging import Limit
from api.transactions import service
from api.transactions.models import (
    BATCH_MAX_ITEMS,
    EntityTimeline,
    IngestResult,
    ItemResult,
    TransactionDetail,
    TransactionView,
)
from core.contracts import EntityType

router = APIRouter(tags=["transactions"])
_Id = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]


def _body(ref: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
        }
    }


async def read_json(request: Request) -> Any:
    """The request's JSON body (size already bounded by the middleware), or 415/422."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaTypeError("send the body as application/json")
    body = await request.body()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UnprocessableError(
            "the body is not valid JSON",
            details=[{"loc": ["body"], "message": str(exc), "type": "json_invalid"}],
        ) from None


def _outcome_details(outcomes: list[service.ItemOutcome], prefix: list[str | int]) -> list[dict[str, Any]]:
    return [
        {**error, "loc": [*prefix, *([o.index] if len(prefix) > 1 else []), *error["loc"]]}
        for o in outcomes
        for error in o.errors
    ]


async def _ingest(ctx: Ctx, principal: CanIngest, items: list[Any], *, single: bool) -> IngestResult:
    service.check_tenants(items, principal)
    outcomes = [service.validate_item(i, item, principal) for i, item in enumerate(items)]
    invalid = [o for o in outcomes if o.transaction is None]
    if invalid:
        # All or nothing: the request as a whole either matches the contract or is refused, so a
        # client fixes and resends one batch instead of reconciling a partial one.
        service.count_rejections(invalid)
        prefix: list[str | int] = ["body"] if single else ["body", "transactions"]
        raise UnprocessableError(
            f"{len(invalid)} of {len(outcomes)} transactions are invalid; nothing was accepted",
            details=_outcome_details(invalid, prefix),
        )
    accepted = [o.transaction for o in outcomes if o.transaction is not None]
    # Blocking: waits for the broker's acknowledgement of every item.
    await run_in_threadpool(
        service.produce_accepted,
        producers=ctx.producers,
        settings=ctx.settings,
        principal=principal,
        items=accepted,
    )
    return IngestResult(
        accepted=len(accepted),
        results=[ItemResult(index=o.index, transaction_id=o.transaction_id) for o in outcomes],
    )


@router.post(
    "/v1/transactions",
    summary="Submit one transaction",
    status_code=202,
    response_model=IngestResult,
    responses=error_responses(401, 403, 413, 415, 422, 429, 503),
    openapi_extra=_body("TransactionSubmission"),
)
async def submit_transaction(request: Request, ctx: Ctx, principal: CanIngest) -> IngestResult:
    """Validate against the transaction contract and hand to Kafka (`tx.raw`, keyed by
    `account_id`). 202 means the broker confirmed delivery; the ingestion service takes it from
    there. `tenant_id` may be omitted when the token has exactly one tenant; naming another
    tenant is 403. Invalid input is 422 with one entry per offending field."""
    body = await read_json(request)
    return await _ingest(ctx, principal, [body], single=True)


@router.post(
    "/v1/transactions:batch",
    summary=f"Submit up to {BATCH_MAX_ITEMS} transactions",
    status_code=202,
    response_model=IngestResult,
    responses=error_responses(401, 403, 413, 415, 422, 429, 503),
    openapi_extra=_body("TransactionBatch"),
)
async def submit_batch(request: Request, ctx: Ctx, principal: CanIngest) -> IngestResult:
    """Like `POST /v1/transactions` for `{"transactions": [...]}`, all or nothing: 202 when every
    item is valid and delivered, else 422 listing each invalid item's field errors (loc
    `body.transactions.<index>.<field>`) with nothing produced. Any item naming a tenant outside
    the token makes the whole request 403."""
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) != {"transactions"} or not isinstance(body["transactions"], list):
        raise UnprocessableError(
            'expected {"transactions": [...]}',
            details=[
                {"loc": ["body"], "message": "expected an object with one key, transactions", "type": "model_type"}
            ],
        )
    items = body["transactions"]
    if not 1 <= len(items) <= BATCH_MAX_ITEMS:
        raise UnprocessableError(
            f"a batch holds 1 to {BATCH_MAX_ITEMS} transactions",
            details=[{"loc": ["body", "transactions"], "message": f"{len(items)} items", "type": "too_long"}],
        )
    return await _ingest(ctx, principal, items, single=False)


@router.get(
    "/v1/transactions/{transaction_id}",
    summary="One transaction with its anomalies and case",
    response_model=TransactionDetail,
    responses=error_responses(401, 403, 404, 409, 422, 429, 503),
)
def get_transaction(
    principal: CanReadTransactions, connection: ReadDb, transaction_id: _Id, tenant_id: TenantQuery = None
) -> TransactionDetail:
    from api.anomalies.service import anomalies_of_transaction

    row = service.get_transaction(
        connection=connection, tenants=principal.tenant_scope(tenant_id), transaction_id=transaction_id
    )
    if row is None:
        raise NotFoundError("no such transaction")
    verdicts = anomalies_of_transaction(
        connection=connection, tenant_id=row["tenant_id"], transaction_id=transaction_id
    )
    case = service.case_of(connection=connection, tenant_id=row["tenant_id"], transaction_id=transaction_id)
    return TransactionDetail.model_validate(
        {
            **row,
            "anomalies": [AnomalySummary.model_validate(a) for a in verdicts],
            "case": CaseSummary.model_validate(case) if case else None,
        }
    )


@router.get(
    "/v1/entities/{entity_type}/{entity_id}/timeline",
    summary="Recent transactions, anomalies and features of an entity",
    response_model=EntityTimeline,
    responses=error_responses(401, 403, 404, 422, 429, 503),
    tags=["entities"],
)
def entity_timeline(
    principal: CanReadTransactions,
    connection: ReadDb,
    entity_type: EntityType,
    entity_id: _Id,
    tenant_id: TenantQuery = None,
    limit: Limit = 50,
) -> EntityTimeline:
    txs, found, features = service.entity_timeline(
        connection=connection,
        tenants=principal.tenant_scope(tenant_id),
        entity_type=entity_type.value,
        entity_id=entity_id,
        limit=limit,
    )
    if not txs and not found:
        raise NotFoundError("no activity for this entity")
    return EntityTimeline(
        entity_type=entity_type.value,
        entity_id=entity_id,
        transactions=[TransactionView.model_validate(t) for t in txs],
        anomalies=[AnomalySummary.model_validate(a) for a in found],
        latest_features=features["features"] if features else None,
        features_at=features["event_time"] if features else None,
    )
