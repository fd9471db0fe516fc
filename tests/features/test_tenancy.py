"""Entities are each tenant's own: two tenants' "acc-1" never share feature state, on any path."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.contracts import Transaction
from features.codec import batch_of, decode_transactions
from features.engine import Batch, FeatureEngine
from features.errors import IncompatibleStateError
from features.offline import replay
from features.registry import FEATURE_NAMES
from tests.features.generator import generate, to_csv_rows


def _two_tenants() -> tuple[list[Transaction], list[Transaction], list[Transaction]]:
    """Tenant t1's stream, tenant t2's (the same entity ids, other payments) and both interleaved."""
    first = generate(400, seed=11, accounts=12)
    second = [
        tx.model_copy(
            update={
                "tenant_id": "t2",
                "transaction_id": f"t2-{tx.transaction_id}",
                "occurred_at": tx.occurred_at + timedelta(milliseconds=1),
                "amount": tx.amount * 7,
            }
        )
        for tx in generate(400, seed=12, accounts=12)
    ]
    both = sorted(first + second, key=lambda tx: (tx.occurred_at, tx.transaction_id))
    return first, second, both


def _stream_rows(transactions: list[Transaction]) -> np.ndarray:
    """Features as the online stage computes them: tx.valid JSON, decoded, in one engine."""
    decoded = decode_transactions([tx.model_dump_json().encode() for tx in transactions])
    assert not decoded.malformed
    return FeatureEngine().compute(batch_of(decoded.transactions, [True] * len(transactions)))


def _scoring_rows(transactions: list[Transaction]) -> np.ndarray:
    """Features as the API's scorer builds its batches (`Batch.append_transaction`)."""
    batch = Batch.empty()
    for tx in transactions:
        batch.append_transaction(tx)
    return FeatureEngine().compute(batch)


def _split(rows: np.ndarray, both: list[Transaction], tenant: str) -> np.ndarray:
    return rows[[i for i, tx in enumerate(both) if tx.tenant_id == tenant]]


@pytest.mark.parametrize("compute", [_stream_rows, _scoring_rows], ids=["stream", "scoring"])
def test_a_tenant_s_features_do_not_depend_on_another_tenant_with_the_same_ids(
    compute: Callable[[list[Transaction]], np.ndarray],
) -> None:
    first, second, both = _two_tenants()
    mixed = compute(both)
    assert np.array_equal(_split(mixed, both, "t1"), compute(first), equal_nan=True)
    assert np.array_equal(_split(mixed, both, "t2"), compute(second), equal_nan=True)
    # Not vacuous: the two streams do share ids, so one tenant's view of both differs from t2's own.
    merged = [tx.model_copy(update={"tenant_id": "t1"}) for tx in both]
    assert not np.array_equal(compute(merged)[[tx.tenant_id == "t2" for tx in both]], compute(second), equal_nan=True)


def test_the_offline_replay_keys_entities_by_tenant_too(tmp_path: Path) -> None:
    first, second, both = _two_tenants()

    def replayed(transactions: list[Transaction], name: str) -> np.ndarray:
        source = tmp_path / f"{name}.csv"
        rows = to_csv_rows(transactions)
        with source.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        table = pq.read_table(replay(input_path=source, output_path=tmp_path / f"{name}.parquet").output)
        return np.column_stack([table.column(f).to_numpy(zero_copy_only=False) for f in FEATURE_NAMES])

    mixed = replayed(both, "both")
    assert np.array_equal(_split(mixed, both, "t1"), replayed(first, "first"), equal_nan=True)
    assert np.array_equal(_split(mixed, both, "t2"), replayed(second, "second"), equal_nan=True)
    assert np.array_equal(mixed, _stream_rows(both), equal_nan=True), "offline and online agree"


def test_state_from_before_tenant_keys_is_refused_as_incompatible() -> None:
    engine = FeatureEngine()
    engine.compute(batch_of(decode_transactions([t.model_dump_json().encode() for t in generate(5)])[0], [True] * 5))
    old = b"VFE2" + engine.to_bytes()[4:]  # the same bytes under the previous format's magic
    with pytest.raises(IncompatibleStateError):
        FeatureEngine.from_bytes(old)
