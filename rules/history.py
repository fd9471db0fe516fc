"""Stored history for backtests: transactions (streamed in batches) and analyst labels.

Stored transactions carry no features. The composition root passes the offline
feature path as `features=` so rules see the same features as online; without
it, feature comparisons are unknown and such rules never fire.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Engine, and_, func, select

from core.contracts import Channel, FeatureVector, Transaction
from core.schema import labels, transactions
from rules.backtest import BacktestReport, backtest
from rules.catalogue import Catalogue
from rules.checker import compile_expression

# Analyst verdicts stored as labels; "fraud" is the positive class, every other label is not fraud.
FRAUD_LABELS: Final = frozenset({"fraud", "confirmed_fraud"})
HISTORY_FEATURE_SET_VERSION: Final = 1


def _window(start: datetime, end: datetime, tenant_id: str | None) -> Any:
    condition = and_(transactions.c.occurred_at >= start, transactions.c.occurred_at < end)
    if tenant_id is not None:
        condition = and_(condition, transactions.c.tenant_id == tenant_id)
    return condition


def count_transactions(*, engine: Engine, start: datetime, end: datetime, tenant_id: str | None = None) -> int:
    """Stored transactions in [start, end) (for progress bars)."""
    with engine.connect() as connection:
        query = select(func.count()).select_from(transactions).where(_window(start, end, tenant_id))
        return int(connection.execute(query).scalar_one())


def transaction_batches(
    *, engine: Engine, start: datetime, end: datetime, tenant_id: str | None = None, batch_size: int = 5000
) -> Iterator[list[FeatureVector]]:
    """Stored transactions in [start, end) in event-time order (ties by id), as vectors without features."""
    columns = [c for c in transactions.c if c.name not in ("ingested_at", "source_ref")]
    order = (transactions.c.occurred_at, transactions.c.transaction_id)  # the feature engine's release order
    query = select(*columns).where(_window(start, end, tenant_id)).order_by(*order)
    with engine.connect() as connection:
        # A server-side cursor: history can be far larger than memory.
        result = connection.execution_options(stream_results=True, yield_per=batch_size).execute(query)
        for partition in result.partitions(batch_size):
            yield [_vector(row._asdict()) for row in partition]


def _vector(row: dict[str, Any]) -> FeatureVector:
    # Stored rows were validated on ingestion; re-validating would reject the column's wider scale.
    row["channel"] = Channel(row["channel"])
    row["attributes"] = row.get("attributes") or {}
    transaction = Transaction.model_construct(**row)
    return FeatureVector.model_construct(
        transaction=transaction, features={}, feature_set_version=HISTORY_FEATURE_SET_VERSION, late=False
    )


def load_labels(
    *, engine: Engine, start: datetime, end: datetime, tenant_id: str | None = None
) -> dict[tuple[str, str], bool]:
    """(tenant, transaction id) -> True (fraud) / False (any other verdict) for labelled transactions in the window."""
    query = (
        select(labels.c.tenant_id, labels.c.transaction_id, labels.c.label)
        .join(
            transactions,
            and_(
                transactions.c.transaction_id == labels.c.transaction_id,
                transactions.c.tenant_id == labels.c.tenant_id,
            ),
        )
        .where(_window(start, end, tenant_id))
    )
    verdicts: dict[tuple[str, str], bool] = {}
    with engine.connect() as connection:
        for tenant, transaction_id, label in connection.execute(query):
            # Any source saying fraud (analyst, chargeback) makes it fraud.
            key = (tenant, transaction_id)
            verdicts[key] = verdicts.get(key, False) or label in FRAUD_LABELS
    return verdicts


FeatureSource = Callable[[Sequence[FeatureVector]], Sequence[FeatureVector]]
"""Adds features to a batch of feature-less vectors; called with every batch in event-time order."""


def backtest_history(
    *,
    engine: Engine,
    expression: str,
    start: datetime,
    end: datetime,
    tenant_id: str | None = None,
    catalogue: Catalogue | None = None,
    features: FeatureSource | None = None,
    warmup: timedelta = timedelta(0),
    batch_size: int = 5000,
    max_examples: int = 20,
    on_batch: Callable[[int], None] | None = None,
) -> BacktestReport:
    """Backtest `expression` over stored transactions in [start, end) against stored labels.

    With `features` (the offline feature path, wired by the composition root),
    history from `start - warmup` is streamed through it first so entity windows
    are warm at `start`; only [start, end) is evaluated. Features see every tenant,
    as online, even when the backtest is for one tenant.
    """
    compile_expression(expression, catalogue=catalogue)  # fail fast, before touching the database
    if features is None:
        batches: Iterable[Sequence[FeatureVector]] = transaction_batches(
            engine=engine, start=start, end=end, tenant_id=tenant_id, batch_size=batch_size
        )
    else:
        raw = transaction_batches(engine=engine, start=start - warmup, end=end, batch_size=batch_size)
        batches = _in_window((features(batch) for batch in raw), start)
    return backtest(
        expression=expression,
        batches=batches,
        labels=load_labels(engine=engine, start=start, end=end, tenant_id=tenant_id),
        tenant_id=tenant_id,
        catalogue=catalogue,
        max_examples=max_examples,
        on_batch=on_batch,
    )


def _in_window(batches: Iterable[Sequence[FeatureVector]], start: datetime) -> Iterator[Sequence[FeatureVector]]:
    for batch in batches:
        kept = [vector for vector in batch if vector.transaction.occurred_at >= start]
        if kept:
            yield kept
