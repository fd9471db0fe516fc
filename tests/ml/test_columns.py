"""Feature matrices: serving builds exactly what FeatureBatch (and training) see."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.detection import FeatureBatch
from detectors.ml import matrix_from_vectors, relative_features
from detectors.ml.columns import signed_log
from tests.detectors.factories import vector

NAMES = ("amount", "account_amount_history_mean", "account_amount_history_std", "not_a_feature")


@given(
    st.lists(
        st.tuples(
            st.floats(0.01, 1e6),
            st.one_of(st.none(), st.lists(st.floats(0.01, 1e4), min_size=0, max_size=6)),
        ),
        min_size=0,
        max_size=30,
    )
)
@settings(max_examples=60, deadline=None)
def test_matrix_equals_feature_batch_columns(rows: list[tuple[float, list[float] | None]]) -> None:
    vectors = [vector(index=i, amount=amount, history=history) for i, (amount, history) in enumerate(rows)]
    matrix = matrix_from_vectors(vectors, NAMES)
    assert matrix.shape == (len(vectors), len(NAMES))
    batch = FeatureBatch(vectors)
    for j, name in enumerate(NAMES):
        np.testing.assert_array_equal(matrix[:, j], batch.feature(name))  # NaN where None or absent


def test_single_feature_matrix() -> None:
    vectors = [vector(index=i, amount=10.0 * (i + 1), history=None) for i in range(3)]
    np.testing.assert_array_equal(matrix_from_vectors(vectors, ["amount"]), [[10.0], [20.0], [30.0]])


def test_relative_features_are_scale_free() -> None:
    names = (
        "amount",
        "account_amount_sum_24h",
        "account_amount_zscore",
        "account_new_merchant",
        "device_distinct_accounts_24h",
        "account_count_1h",
        "account_count_24h",
        "account_geo_velocity_kmh",
        "account_hour_typicality",
    )
    assert relative_features(names) == (
        "account_amount_zscore",
        "account_new_merchant",
        "device_distinct_accounts_24h",
        "account_count_1h",
        "account_geo_velocity_kmh",
        "account_hour_typicality",
    )


def test_signed_log_keeps_order_and_sign() -> None:
    values = np.array([[-1000.0, -1.0, 0.0, 0.5, 1e9, np.nan]])
    out = signed_log(values)
    assert np.all(np.diff(out[0, :5]) > 0)
    assert out[0, 2] == 0.0 and np.isnan(out[0, 5])
