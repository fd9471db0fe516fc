"""Feature vectors for rule tests: explicit transaction fields and features, nothing random."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from core.contracts import Channel, FeatureVector, Transaction

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)


def vector(
    index: int = 0,
    *,
    amount: str = "25.00",
    currency: str = "EUR",
    features: dict[str, float | None] | None = None,
    tenant: str = "acme",
    account: str = "acc-1",
    card: str | None = "card-1",
    merchant: str = "m-1",
    category: str = "5411",
    channel: Channel = Channel.ECOMMERCE,
    country: str = "DE",
    device: str | None = None,
    ip: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    occurred: datetime | None = None,
    transaction_id: str | None = None,
) -> FeatureVector:
    transaction = Transaction(
        transaction_id=transaction_id or f"tx-{index}",
        occurred_at=occurred or T0 + timedelta(seconds=index),
        tenant_id=tenant,
        account_id=account,
        card_id=card,
        merchant_id=merchant,
        merchant_category=category,
        amount=Decimal(amount),
        currency=currency,
        channel=channel,
        country=country,
        device_id=device,
        ip=ip,
        lat=lat,
        lon=lon,
    )
    return FeatureVector(transaction=transaction, features=features or {}, feature_set_version=1)
