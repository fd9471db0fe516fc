"""Feature matrices: which features a model reads, and how rows become one float64 matrix.

Training reads the offline parquet (`vigil replay`); serving reads `FeatureVector`s
from Kafka. Both end here, in the model's recorded feature order, so a model
sees the same columns online and offline.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Final

import numpy as np

from core.contracts import FeatureVector
from core.detection import FloatArray

# Columns of the offline parquet that identify a row rather than describe it.
IDENTITY_COLUMNS: Final = frozenset(
    {
        "transaction_id",
        "occurred_at",
        "tenant_id",
        "account_id",
        "merchant_id",
        "event_time",
        "amount_value",
        "late",
        "feature_set_version",
    }
)
# Scale-free features: deviations from an entity's own habits, first-seen flags, spread of
# counterparties, short-window velocity. They mean the same for a student and a company in any
# currency, which raw sums and means do not; unsupervised models score these (ADR 0008).
_RELATIVE_MARKERS: Final = ("zscore", "_new_", "distinct_", "velocity", "typicality", "_count_1h")


def relative_features(names: Sequence[str]) -> tuple[str, ...]:
    """The scale-free subset of `names` (registry order kept); unsupervised models use it."""
    return tuple(name for name in names if any(marker in name for marker in _RELATIVE_MARKERS))


def signed_log(matrix: FloatArray) -> FloatArray:
    """sign(x) * log(1 + |x|): tames heavy tails (amounts, counts) without losing order or sign."""
    return np.asarray(np.sign(matrix) * np.log1p(np.abs(matrix)), dtype=np.float64)


def matrix_from_vectors(vectors: Sequence[FeatureVector], names: Sequence[str]) -> FloatArray:
    """Rows x `names` as float64, NaN where a feature is None or absent."""
    if not vectors:
        return np.empty((0, len(names)), dtype=np.float64)
    if len(names) == 1:
        # itemgetter of one key returns a scalar, not a tuple.
        single = names[0]
        rows: list[tuple[object, ...]] = [(v.features.get(single),) for v in vectors]
    else:
        getter = operator.itemgetter(*names)
        try:
            rows = [getter(v.features) for v in vectors]  # C-level lookups: the fast path
        except KeyError:
            rows = [tuple(v.features.get(name) for name in names) for v in vectors]
    # With a float dtype numpy turns None into NaN itself (faster than masking an object array).
    return np.array(rows, dtype=np.float64).reshape(len(vectors), len(names))
