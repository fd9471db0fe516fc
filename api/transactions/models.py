"""Views of transactions, entity timelines and ingestion results."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Literal

import pycountry
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.anomalies.models import AnomalySummary
from api.cases.models import CaseSummary
from core.contracts import Transaction, in_currency_units

BATCH_MAX_ITEMS: Final = 1000

_TX_EXAMPLE: Final[dict[str, Any]] = {
    "transaction_id": "tx-20261124-000123",
    "occurred_at": "2026-11-24T10:15:02Z",
    "tenant_id": "acme",
    "account_id": "acc-42",
    "card_id": "card-42-1",
    "merchant_id": "m-981",
    "merchant_category": "5411",
    "amount": "42.50",
    "currency": "EUR",
    "channel": "card_present",
    "country": "DE",
    "device_id": None,
    "ip": None,
    "lat": 52.52,
    "lon": 13.40,
    "attributes": {},
}


class TransactionView(BaseModel):
    """A stored transaction."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_TX_EXAMPLE, "ingested_at": "2026-11-24T10:15:02.050Z"}]}
    )

    transaction_id: str
    occurred_at: datetime
    tenant_id: str
    account_id: str
    card_id: str | None
    merchant_id: str
    merchant_category: str
    amount: Decimal
    currency: str
    channel: str
    country: str
    device_id: str | None
    ip: str | None
    lat: float | None
    lon: float | None
    attributes: dict[str, Any]
    ingested_at: datetime

    @model_validator(mode="after")
    def _amount_in_currency_units(self) -> TransactionView:
        # Stored with four decimals for every currency: shown as sent, so it can be sent again.
        self.amount = in_currency_units(self.amount, self.currency)
        return self


class TransactionDetail(TransactionView):
    """A transaction with every detector's verdict and its case, if any."""

    anomalies: list[AnomalySummary]
    case: CaseSummary | None


class EntityTimeline(BaseModel):
    """Recent activity of one entity: transactions, anomalies and the latest feature snapshot."""

    entity_type: str
    entity_id: str
    transactions: list[TransactionView]
    anomalies: list[AnomalySummary]
    latest_features: dict[str, float | None] | None = Field(
        description="Features from the entity's most recent anomaly (what detectors last saw)."
    )
    features_at: datetime | None


class ItemResult(BaseModel):
    index: int = Field(description="Position of the item in the request.")
    transaction_id: str | None
    status: Literal["accepted"] = "accepted"


class IngestResult(BaseModel):
    """Every item is on Kafka (delivery confirmed by the broker)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "accepted": 2,
                    "results": [
                        {"index": 0, "transaction_id": "tx-1", "status": "accepted"},
                        {"index": 1, "transaction_id": "tx-2", "status": "accepted"},
                    ],
                }
            ]
        }
    )

    accepted: int
    results: list[ItemResult]


def submission_schemas() -> dict[str, dict[str, Any]]:
    """OpenAPI components for submitted transactions: the contract with `tenant_id` optional.

    Derived from `core.contracts.Transaction` so the documentation cannot drift from
    what is validated; currencies and countries are listed so generated clients get enums.
    """
    schema = Transaction.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    properties = dict(schema["properties"])
    properties.pop("ingested_at", None)
    properties["tenant_id"] = {
        "anyOf": [properties["tenant_id"], {"type": "null"}],
        "default": None,
        "title": "Tenant Id",
        "description": "Omit (or null) when the token has exactly one tenant; otherwise one of the token's tenants.",
    }
    properties["currency"] = {
        **properties["currency"],
        "enum": sorted(c.alpha_3 for c in pycountry.currencies),
    }
    properties["country"] = {**properties["country"], "enum": sorted(c.alpha_2 for c in pycountry.countries)}
    schema["properties"] = properties
    schema["required"] = [name for name in schema.get("required", []) if name != "tenant_id"]
    schema["title"] = "TransactionSubmission"
    schema["description"] = (
        "A payment as producers send it (see docs/api.md). Cross-field rules the schema cannot "
        "express are checked too: amount decimals per currency, lat and lon together."
    )
    schema["examples"] = [_TX_EXAMPLE]
    batch = {
        "title": "TransactionBatch",
        "type": "object",
        "additionalProperties": False,
        "required": ["transactions"],
        "properties": {
            "transactions": {
                "type": "array",
                "minItems": 1,
                "maxItems": BATCH_MAX_ITEMS,
                "items": {"$ref": "#/components/schemas/TransactionSubmission"},
            }
        },
        "examples": [{"transactions": [_TX_EXAMPLE]}],
    }
    return {**definitions, "TransactionSubmission": schema, "TransactionBatch": batch}
