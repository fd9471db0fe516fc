"""Decoding tx.valid and encoding FeatureVector JSON without pydantic, checked against the models."""

from __future__ import annotations

import math
import random
import struct

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from core.contracts import FEATURE_NAMES_BY_VERSION, FeatureVector
from features.codec import MalformedTransactionError, decode_transaction, decode_transactions, encode_vectors
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


def _outcomes(values: list[bytes]) -> list[object]:
    """Per message: the batch decoder's transaction or dead-letter reason."""
    transactions, malformed = decode_transactions(values)
    decoded = iter(transactions)
    return [malformed[i].reason if i in malformed else next(decoded) for i in range(len(values))]


def _reference(value: bytes) -> object:
    try:
        return decode_transaction(value)
    except MalformedTransactionError as exc:
        return exc.reason


def _same(left: object, right: object) -> bool:
    """Equal, with floats compared bit for bit (-0.0 is not 0.0)."""
    if isinstance(left, tuple) and isinstance(right, tuple):
        return len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, float) and isinstance(right, float):
        return struct.pack("<d", left) == struct.pack("<d", right)
    return type(left) is type(right) and left == right


def _variants() -> list[bytes]:
    """Well-formed messages with one field changed to each awkward value, or removed."""
    awkward: dict[str, list[object]] = {
        "amount": ["0", "-1", "1e3", "1.", ".5", "00012.50", "12345678901234567", "999999999999999", 5, "nan", " 5"],
        "lat": [0, -0.0, 48, 48.1, 90.12345678901234567, 1e300, 12345678901234567890, True, "48", None, {}],
        "lon": [None, 2, -0.0, 2.5, [1]],
        "occurred_at": [
            "2026-05-01T00:00:00Z",
            "2026-05-01T00:00:00.5Z",
            "2026-05-01T00:00:00.123Z",
            "2024-02-29T23:59:59.999999+00:00",
            "2026-02-29T00:00:00Z",
            "2026-05-01T00:00:60Z",
            "2026-05-01T00:00:00",
            "2026-05-01 00:00:00Z",
            "1969-12-31T23:59:59.999999Z",
            "2300-01-01T00:00:00Z",
            "2026-05-01T00:00:00+01:00",
        ],
        "schema_version": [1, 1.0, 2, True, "1", None],
        "card_id": ["", None, 5, "c"],
        "ip": ["", "10.0.0.1", False],
        "country": ["de", "", "Us", "\u00e9t"],
        "transaction_id": ["", 5, "tx-\u00e9", 'q"uote'],
        "attributes": [{"a": [1, -2.5, {"b": None, "c": [True, False]}]}, [], "x", 1.5e10, [[[[[]]]]], {"k": "\n"}],
    }
    out: list[bytes] = []
    for transaction in generate(20, seed=11):
        data = orjson.loads(transaction.model_dump_json())
        for name, values in awkward.items():
            out.extend(orjson.dumps({**data, name: value}) for value in values)
            out.append(orjson.dumps({key: value for key, value in data.items() if key != name}))
        raw = orjson.dumps(data)
        out += [b" " + raw + b"\n", raw.replace(b'"amount"', b'"amount" : "1" , "amount"'), raw[:-1]]
    return [*out, b"", b"null", b"[]", b"{}", b'{"a":1,"a":2}', b"\xff"]


def test_the_batch_decoder_agrees_with_the_per_message_one() -> None:
    values = [tx.model_dump_json().encode() for tx in generate(300, seed=4)] + _variants()
    fast = sum(1 for value in values if isinstance(_outcomes([value])[0], tuple))
    assert fast > 300  # most well-formed variants take the scanner, not the fallback
    for value, outcome in zip(values, _outcomes(values), strict=True):
        assert _same(outcome, _reference(value)), value


_EDITS = [b"", b" ", b"\t", b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b"1", b"-", b".", b"e", b"0", b"Z"]
_EDITS += [b"null", b"true", b"+00:00", b"\xc3\xa9", b"\x01"]


@settings(max_examples=300, deadline=None)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(0, 10_000),
            st.sampled_from(["replace", "insert", "delete"]),
            st.sampled_from(_EDITS),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_mangled_messages_decode_and_dead_letter_as_one_by_one(edits: list[tuple[int, str, bytes]]) -> None:
    messages = [tx.model_dump_json().encode() for tx in generate(3, seed=9)]
    mangled = bytearray(messages[1])
    for at, kind, text in edits:
        at %= len(mangled) + 1
        if kind == "replace":
            mangled[at : at + 1] = text
        elif kind == "insert":
            mangled[at:at] = text
        else:
            del mangled[at : at + 2]
    values = [messages[0], bytes(mangled), messages[2]]
    for value, outcome in zip(values, _outcomes(values), strict=True):
        assert _same(outcome, _reference(value)), value


def test_coordinates_parse_exactly_like_orjson() -> None:
    rng = random.Random(3)
    data = orjson.loads(generate(1)[0].model_dump_json())
    values = []
    for _ in range(3_000):
        lat = round(rng.uniform(-90, 90), rng.randrange(0, 18))
        values.append(orjson.dumps({**data, "lat": lat, "lon": -lat}))
    for value, outcome in zip(values, _outcomes(values), strict=True):
        assert _same(outcome, _reference(value))


def test_compact_rows_are_byte_for_byte_what_orjson_writes() -> None:
    # Pins the output bytes: each row is exactly orjson's serialisation of it, inside the fixed frame.
    rng = np.random.default_rng(5)
    n = 400
    rows = rng.normal(0, 1e3, (n, len(FEATURE_NAMES)))
    kind = rng.integers(0, 8, rows.shape)
    rows[kind == 0] = np.nan
    rows[kind == 1] = np.round(rows[kind == 1])
    rows[kind == 2] = rng.integers(-(10**16), 10**16, int((kind == 2).sum())).astype(np.float64)
    rows[kind == 3] = rng.choice([0.0, -0.0, 1.0, -1.0, 1e15, -1e15, 999999999999999.0, 1e16, np.inf, 5e-324])
    rows[kind == 4] = rng.integers(-(10**6), 10**6, int((kind == 4).sum())) / 8
    raws = [tx.model_dump_json().encode() for tx in generate(n, seed=8)]
    vectors = encode_vectors(raws, rows, [i % 3 == 0 for i in range(n)])
    for i, (raw, vector) in enumerate(zip(raws, vectors, strict=True)):
        expected = b'{"schema_version":1,"transaction":%s,"feature_values":%s,"feature_set_version":%d,"late":%s}' % (
            raw,
            orjson.dumps(rows[i], option=orjson.OPT_SERIALIZE_NUMPY),
            FEATURE_SET_VERSION,
            b"true" if i % 3 == 0 else b"false",
        )
        assert vector == expected
