"""Feature batches for detector tests: histories with known statistics and planted outliers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np

from core.contracts import Channel, FeatureVector, Transaction
from detectors.config import MIN_HISTORY_DEFAULT


def vector(
    *,
    index: int,
    amount: float,
    history: list[float] | None,
    tenant: str = "acme",
    account: str | None = None,
    extra: dict[str, float | None] | None = None,
) -> FeatureVector:
    """A feature vector whose account history statistics are computed exactly from `history`."""
    features: dict[str, float | None] = {"amount": amount}
    if history is not None:
        values = np.asarray(history, dtype=np.float64)
        median = float(np.median(values)) if len(values) else 0.0
        features.update(
            {
                "account_amount_history_count": float(len(values)),
                "account_amount_history_mean": float(values.mean()) if len(values) else None,
                "account_amount_history_std": float(values.std()) if len(values) else None,
                "account_amount_history_median": median if len(values) else None,
                "account_amount_history_mad": float(np.median(np.abs(values - median))) if len(values) else None,
                "account_amount_history_q1": float(np.quantile(values, 0.25)) if len(values) else None,
                "account_amount_history_q3": float(np.quantile(values, 0.75)) if len(values) else None,
            }
        )
    features.update(extra or {})
    occurred = datetime(2026, 11, 20, 12, tzinfo=UTC) + timedelta(seconds=index)
    transaction = Transaction(
        transaction_id=f"tx-{index}",
        occurred_at=occurred,
        tenant_id=tenant,
        account_id=account or f"acc-{index % 50}",
        merchant_id=f"m-{index % 7}",
        merchant_category="5411",
        amount=Decimal(f"{amount:.2f}"),
        currency="EUR",
        channel=Channel.ECOMMERCE,
        country="DE",
    )
    return FeatureVector(transaction=transaction, features=features, feature_set_version=1)


def labelled_batch(
    seed: int = 7, size: int = 400, outlier_share: float = 0.05
) -> tuple[list[FeatureVector], list[bool]]:
    """Accounts with lognormal habits; a planted share of amounts 8-20x the habit (labelled True)."""
    rng = np.random.default_rng(seed)
    vectors, labels = [], []
    for i in range(size):
        habit = float(rng.uniform(10, 200))
        history = list(np.round(rng.lognormal(np.log(habit), 0.3, size=int(rng.integers(0, 40))), 2))
        is_outlier = bool(rng.random() < outlier_share)
        amount = habit * float(rng.uniform(8, 20)) if is_outlier else float(rng.lognormal(np.log(habit), 0.3))
        vectors.append(vector(index=i, amount=round(amount, 2), history=history))
        labels.append(is_outlier and len(history) >= MIN_HISTORY_DEFAULT)
    return vectors, labels
