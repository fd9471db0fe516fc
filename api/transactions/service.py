"""Transaction lookups, entity timelines, and the HTTP path into `tx.raw`.

Ingestion here only validates, applies the token's tenant, and hands items to
Kafka; "accepted" means the broker acknowledged them (`flush_or_raise`). The
ingestion service does enrichment, storage and dead-lettering downstream.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from pydantic import ValidationError
from sqlalchemy import Connection, select

from api.anomalies.service import SNAPSHOT_OF_ANOMALY
from api.context import DELIVERY_TIMEOUT_SECONDS, ProducerPool
from api.errors import ConflictError, ForbiddenError, UnavailableError
from api.permissions import Principal
from core import metrics
from core.contracts import Transaction
from core.errors import KafkaDeliveryError
from core.schema import anomalies, anomaly_features, cases, transactions
from core.settings import Settings
from core.topics import TX_RAW

ENTITY_COLUMNS: Final = {
    "account": transactions.c.account_id,
    "card": transactions.c.card_id,
    "merchant": transactions.c.merchant_id,
    "device": transactions.c.device_id,
    "ip": transactions.c.ip,
}
_SUMMARY_COLUMNS: Final = list(anomalies.c)
HEADER_SOURCE: Final = "vigil.source"
HEADER_PRINCIPAL: Final = "vigil.principal"


def sole_tenant(*, transaction_id: str, tenants: Iterable[str]) -> str | None:
    """The tenant whose transaction an id names for this caller; None if none.

    Ids are unique per tenant only (ADR 0013): a caller who sees several tenants that each have
    the id gets a 409 naming them (all within its own scope) rather than one picked for it.
    """
    found = sorted(set(tenants))
    if len(found) > 1:
        raise ConflictError(
            f"transaction {transaction_id!r} exists in tenants {', '.join(found)}: name one with ?tenant_id=",
            code="ambiguous_transaction_id",
        )
    return found[0] if found else None


def get_transaction(
    *, connection: Connection, tenants: Sequence[str] | None, transaction_id: str
) -> dict[str, Any] | None:
    query = select(transactions).where(transactions.c.transaction_id == transaction_id)
    if tenants is not None:
        query = query.where(transactions.c.tenant_id.in_(list(tenants)))
    rows = [dict(row._mapping) for row in connection.execute(query)]
    tenant = sole_tenant(transaction_id=transaction_id, tenants=(row["tenant_id"] for row in rows))
    return next((row for row in rows if row["tenant_id"] == tenant), None)


def case_of(*, connection: Connection, tenant_id: str, transaction_id: str) -> dict[str, Any] | None:
    query = select(cases).where(cases.c.tenant_id == tenant_id, cases.c.transaction_id == transaction_id)
    row = connection.execute(query).first()
    return None if row is None else dict(row._mapping)


def entity_timeline(
    *,
    connection: Connection,
    tenants: Sequence[str] | None,
    entity_type: str,
    entity_id: str,
    limit: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any] | None]:
    """Latest transactions and anomalies of an entity, and its latest feature snapshot."""
    column = ENTITY_COLUMNS[entity_type]
    tx_query = select(transactions).where(column == entity_id)
    an_query = select(*_SUMMARY_COLUMNS).where(
        anomalies.c.entity_type == entity_type, anomalies.c.entity_id == entity_id
    )
    # The snapshot behind the entity's latest anomaly that has one (stored per transaction, ADR 0011).
    features_query = (
        select(anomaly_features.c.features, anomalies.c.event_time)
        .select_from(anomalies.join(anomaly_features, SNAPSHOT_OF_ANOMALY))
        .where(anomalies.c.entity_type == entity_type, anomalies.c.entity_id == entity_id)
    )
    if tenants is not None:
        tx_query = tx_query.where(transactions.c.tenant_id.in_(list(tenants)))
        an_query = an_query.where(anomalies.c.tenant_id.in_(list(tenants)))
        features_query = features_query.where(anomalies.c.tenant_id.in_(list(tenants)))
    recent_tx = [
        dict(r._mapping) for r in connection.execute(tx_query.order_by(transactions.c.occurred_at.desc()).limit(limit))
    ]
    recent_anomalies = [
        dict(r._mapping)
        for r in connection.execute(
            an_query.order_by(anomalies.c.event_time.desc(), anomalies.c.anomaly_id.desc()).limit(limit)
        )
    ]
    latest = connection.execute(features_query.order_by(anomalies.c.event_time.desc()).limit(1)).first()
    return recent_tx, recent_anomalies, None if latest is None else dict(latest._mapping)


# --- ingestion --------------------------------------------------------------------------------


@dataclass(slots=True)
class ItemOutcome:
    index: int
    transaction_id: str | None
    transaction: Transaction | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {
            "loc": [part if isinstance(part, int) else str(part) for part in error["loc"]],
            "message": str(error["msg"]).removeprefix("Value error, "),
            "type": error["type"],
        }
        for error in exc.errors()
    ]


def check_tenants(items: Sequence[Any], principal: Principal) -> None:
    """403 for the whole request when any item names a tenant the token does not have."""
    for item in items:
        if isinstance(item, dict):
            tenant = item.get("tenant_id")
            if isinstance(tenant, str) and not principal.sees_tenant(tenant):
                raise ForbiddenError(f"this token may not submit transactions for tenant {tenant!r}")


def validate_item(index: int, item: Any, principal: Principal) -> ItemOutcome:
    """Validate one submitted item against the contract, filling `tenant_id` from the token."""
    if not isinstance(item, dict):
        return ItemOutcome(
            index, None, errors=[{"loc": [], "message": "expected a JSON object", "type": "object_type"}]
        )
    raw_id = item.get("transaction_id")
    outcome = ItemOutcome(index, raw_id if isinstance(raw_id, str) else None)
    data = {key: value for key, value in item.items() if key != "ingested_at"}
    if "ingested_at" in item:
        outcome.errors.append(
            {"loc": ["ingested_at"], "message": "set by Vigil, not by producers", "type": "forbidden_field"}
        )
    if data.get("tenant_id") is None:
        data.pop("tenant_id", None)
        if len(principal.tenants) == 1:
            data["tenant_id"] = next(iter(principal.tenants))
        else:
            outcome.errors.append(
                {
                    "loc": ["tenant_id"],
                    "message": "required: the token is not limited to exactly one tenant",
                    "type": "missing",
                }
            )
    try:
        # Strict JSON validation: the published schema is the contract, so no "12.5" for a number
        # or a Unix timestamp for a date-time (lax parsing would accept both).
        transaction = Transaction.model_validate_json(orjson.dumps(data), strict=True)
    except ValidationError as exc:
        # A missing tenant was already explained above in terms of the token.
        tenant_reported = any(error["loc"] == ["tenant_id"] for error in outcome.errors)
        outcome.errors.extend(
            error for error in _errors(exc) if not (tenant_reported and error["loc"] == ["tenant_id"])
        )
        return outcome
    if not outcome.errors:
        outcome.transaction = transaction
    return outcome


def produce_accepted(
    *, producers: ProducerPool, settings: Settings, principal: Principal, items: Sequence[Transaction]
) -> None:
    """Hand items to `tx.raw` keyed by account and wait until the broker confirms every one."""
    if not items:
        return
    topic = settings.topic(TX_RAW)
    headers = [
        (HEADER_SOURCE, b"http"),
        (HEADER_PRINCIPAL, principal.principal_id.encode()),
        ("content-type", b"application/json"),
    ]
    with producers.acquire() as producer:
        for item in items:
            producer.produce(
                topic, item.model_dump_json(exclude={"ingested_at"}).encode(), key=item.account_id, headers=headers
            )
        try:
            # A little longer than the message timeout, so failures arrive as delivery reports.
            producer.flush_or_raise(timeout=DELIVERY_TIMEOUT_SECONDS + 2.0)
        except KafkaDeliveryError as exc:
            raise UnavailableError(
                f"Kafka did not confirm delivery ({exc}); retry the request (a retried item that did arrive "
                "is recognised downstream by its transaction id)",
                code="delivery_failed",
                headers={"Retry-After": "1"},
            ) from None


def count_rejections(outcomes: Sequence[ItemOutcome]) -> None:
    for outcome in outcomes:
        if outcome.transaction is None:
            reason = str(outcome.errors[0]["type"]) if outcome.errors else "invalid"
            metrics.TRANSACTIONS_REJECTED.labels("http", reason).inc()
