"""The fast validator agrees with the pydantic contract (hypothesis), and never crashes."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from core.contracts import Transaction
from ingestion.validate import Invalid, Valid, from_model, parse_transaction
from tests.ingestion.strategies import JSON_VALUES, near_misses, valid_payloads

MAX_BYTES = 65_536


def canonical(valid: Valid) -> bytes:
    """Type-exact comparison: 1, 1.0 and True differ here, as do time zones."""
    offset = valid.occurred_at.utcoffset()
    assert offset is not None and offset.total_seconds() == 0
    return orjson.dumps(valid.fields, option=orjson.OPT_UTC_Z | orjson.OPT_SORT_KEYS)


def contract(raw: bytes) -> Valid | Invalid | None:
    """What the pydantic model alone decides (None = the model refuses)."""
    try:
        model = Transaction.model_validate_json(raw)
    except ValidationError:
        return None
    return from_model(model)


@given(valid_payloads())
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_schema_valid_transaction_is_accepted_with_the_models_values(payload: dict[str, Any]) -> None:
    raw = orjson.dumps(payload)
    expected = contract(raw)
    assert isinstance(expected, Valid), f"strategy drew an invalid payload: {payload}"
    result = parse_transaction(raw, max_bytes=MAX_BYTES)
    assert isinstance(result, Valid), result
    assert canonical(result) == canonical(expected)
    assert result.transaction_id == payload["transaction_id"]
    assert result.occurred_at.tzinfo is UTC


@given(near_misses())
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example({"amount": "1e3", "transaction_id": "t"})
def test_near_misses_get_the_same_verdict_as_the_contract(payload: dict[str, Any]) -> None:
    raw = json.dumps(payload).encode()  # stdlib: near misses include integers beyond 64 bits
    expected = contract(raw)
    result = parse_transaction(raw, max_bytes=MAX_BYTES)
    if expected is None:
        assert isinstance(result, Invalid), f"accepted what the contract refuses: {payload}"
        assert result.reason and result.detail
    elif isinstance(expected, Invalid):
        assert result == expected
    else:
        assert isinstance(result, Valid), f"refused what the contract accepts: {payload} -> {result}"
        assert canonical(result) == canonical(expected)


@given(JSON_VALUES)
@settings(max_examples=400, deadline=None)
def test_arbitrary_json_yields_a_verdict_never_an_exception(value: Any) -> None:
    raw = json.dumps(value).encode()
    result = parse_transaction(raw, max_bytes=MAX_BYTES)
    assert isinstance(result, Valid | Invalid)
    if not isinstance(value, dict):
        assert isinstance(result, Invalid) and result.reason == "not_an_object"


@given(st.binary(max_size=300))
@settings(max_examples=400, deadline=None)
def test_arbitrary_bytes_yield_a_verdict_never_an_exception(raw: bytes) -> None:
    result = parse_transaction(raw, max_bytes=MAX_BYTES)
    assert isinstance(result, Valid | Invalid)


def test_the_fast_paths_joined_check_keeps_each_field_to_its_own_pattern() -> None:
    """The fast path matches the text fields joined by U+001F: a separator inside one must not pass."""
    from ingestion.validate import fast_path
    from tests.ingestion.helpers import transaction

    base = transaction(1)
    assert isinstance(fast_path(orjson.loads(orjson.dumps(base))), Valid)
    for field in ("transaction_id", "tenant_id", "account_id", "merchant_id", "merchant_category", "channel"):
        payload = {**base, field: f"{base[field]}\x1f{base[field]}"}
        raw = orjson.dumps(payload)
        assert fast_path(orjson.loads(raw)) is None, field
        result = parse_transaction(raw, max_bytes=MAX_BYTES)
        assert isinstance(result, Invalid) and result.reason == "invalid_value", (field, result)
    # Shifting text between neighbours keeps the separator count but breaks the fields' own patterns.
    shifted = {**base, "merchant_category": "54", "merchant_id": f"{base['merchant_id']}\x1f11"}
    assert fast_path(orjson.loads(orjson.dumps(shifted))) is None


def test_a_cached_attribute_key_does_not_let_invalid_keys_through() -> None:
    from tests.ingestion.helpers import transaction

    ok = orjson.dumps(transaction(1, attributes={"entry_mode": "chip"}))
    assert isinstance(parse_transaction(ok, max_bytes=MAX_BYTES), Valid)
    assert isinstance(parse_transaction(ok, max_bytes=MAX_BYTES), Valid)  # now from the cache
    for key in ("Entry_mode", "entry mode", "x" * 41, "1st"):
        bad = orjson.dumps(transaction(1, attributes={"entry_mode": "chip", key: "v"}))
        result = parse_transaction(bad, max_bytes=MAX_BYTES)
        assert isinstance(result, Invalid) and result.reason == "invalid_value", (key, result)
