"""Decoding tx.valid and encoding FeatureVector JSON without pydantic, checked against the models."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from pydantic import ValidationError

from core.contracts import FEATURE_NAMES_BY_VERSION, FeatureVector
from features.codec import MalformedTransactionError, decode_transaction, encode_vectors
from features.engine import Batch, FeatureEngine
from features.registry import FEATURE_NAMES, FEATURE_SET_VERSION
from tests.features.generator import generate


def test_the_registry_matches_the_contract_name_list_of_its_version() -> None:
    # Consumers name compact vectors' values by core's list: a registry change without a new
    # version (and its list in core.contracts) would silently shift every feature.
    assert FEATURE_NAMES_BY_VERSION[FEATURE_SET_VERSION] == FEATURE_NAMES


@pytest.mark.parametrize("form", ["compact", "named"])
def test_encoded_vectors_validate_against_the_contract(form: str) -> None:
    transactions = generate(50, seed=3)
    raws = [tx.model_dump_json().encode() for tx in transactions]
    decoded = [decode_transaction(raw) for raw in raws]
    batch = Batch.empty()
    for tx in decoded:
        batch.append(
            time=tx.time,
            account=tx.account_id,
            card=tx.card_id,
            merchant=tx.merchant_id,
            device=tx.device_id,
            ip=tx.ip,
            country=tx.country,
            amount=tx.amount,
            lat=tx.lat,
            lon=tx.lon,
        )
    rows = FeatureEngine().compute(batch)
    vectors = encode_vectors(raws, rows, [False] * 49 + [True], form=form)
    assert all((b'"feature_values":[' in v) == (form == "compact") for v in vectors)
    for original, vector_json, row in zip(transactions, vectors, rows, strict=True):
        vector = FeatureVector.model_validate_json(vector_json)
        assert vector.transaction == original
        assert vector.feature_set_version == FEATURE_SET_VERSION
        assert list(vector.features) == list(FEATURE_NAMES)
        for name, value in zip(FEATURE_NAMES, row.tolist(), strict=True):
            got = vector.features[name]
            assert (got is None) if math.isnan(value) else got == value
    assert FeatureVector.model_validate_json(vectors[-1]).late is True
    assert decoded[0].time == transactions[0].occurred_at.timestamp()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'{"schema_version": 9}', "unsupported_schema_version"),
        (
            b'{"transaction_id": "x", "account_id": "a", "merchant_id": "m", "country": "DE", "amount": "1"}',
            "missing_field",
        ),
    ],
)
def test_malformed_messages_get_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedTransactionError) as caught:
        decode_transaction(raw)
    assert caught.value.reason == reason


def test_bad_amount_and_time_are_rejected() -> None:
    good = orjson.loads(generate(1)[0].model_dump_json())
    for field, value in (
        ("amount", "-3"),
        ("amount", True),
        ("occurred_at", "yesterday"),
        ("occurred_at", "2026-01-01T00:00:00"),
    ):
        data = dict(good, **{field: value})
        with pytest.raises(MalformedTransactionError) as caught:
            decode_transaction(orjson.dumps(data))
        assert caught.value.reason == "bad_field", (field, value)


def test_nan_becomes_null() -> None:
    raw = generate(1)[0].model_dump_json().encode()
    row = np.full((1, len(FEATURE_NAMES)), np.nan)
    vector = orjson.loads(encode_vectors([raw], row, [False], form="named")[0])
    assert all(value is None for value in vector["features"].values())
    compact = orjson.loads(encode_vectors([raw], row, [False])[0])
    assert compact["feature_values"] == [None] * len(FEATURE_NAMES)


def test_both_forms_decode_to_the_same_vector_and_serialise_named() -> None:
    raws = [tx.model_dump_json().encode() for tx in generate(3, seed=5)]
    rows = np.arange(3 * len(FEATURE_NAMES), dtype=np.float64).reshape(3, -1) / 7
    rows[1, 4] = np.nan
    compact = [FeatureVector.model_validate_json(v) for v in encode_vectors(raws, rows, [False, True, False])]
    named = [
        FeatureVector.model_validate_json(v) for v in encode_vectors(raws, rows, [False, True, False], form="named")
    ]
    assert compact == named
    assert compact[1].features[FEATURE_NAMES[4]] is None
    assert compact[1].late is True
    dumped = orjson.loads(compact[0].model_dump_json())
    assert "feature_values" not in dumped
    assert list(dumped["features"]) == list(FEATURE_NAMES)
    assert FeatureVector.model_validate_json(compact[0].model_dump_json()) == compact[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"feature_values": [1.0]}, "has 141 features, not 1"),
        ({"feature_set_version": 99}, "unknown feature_set_version 99"),
        ({"features": {"amount": 1.0}}, "alternatives, not both"),
        ({"feature_values": None}, "either features or feature_values is required"),
        ({"feature_values": ["x"] * len(FEATURE_NAMES)}, "feature_values.0"),
    ],
)
def test_malformed_compact_vectors_violate_the_contract(change: dict[str, object], message: str) -> None:
    raw = generate(1)[0].model_dump_json().encode()
    vector = orjson.loads(encode_vectors([raw], np.zeros((1, len(FEATURE_NAMES))), [False])[0])
    vector.update(change)
    with pytest.raises(ValidationError, match=message):
        FeatureVector.model_validate_json(orjson.dumps(vector))
