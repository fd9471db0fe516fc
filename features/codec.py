"""Fast decoding of `tx.valid` messages and encoding of `FeatureVector` JSON (no pydantic in the hot loop).

`decode_transaction` checks only what the features need; ingestion already
validated the full contract. The output embeds the input transaction JSON
verbatim (orjson.Fragment), so the transaction travels unchanged; tests check
the result against the pydantic `FeatureVector` model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
import orjson

from core.contracts import SCHEMA_VERSION
from features.engine import epoch_seconds
from features.errors import FeaturesError
from features.registry import FEATURE_NAMES, FEATURE_SET_VERSION

_NAMES: Final = FEATURE_NAMES


class MalformedTransactionError(ValueError):
    """A `tx.valid` message the features stage cannot use; `reason` is machine-readable."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Tx:
    """The fields the engine reads, plus the original JSON to pass on."""

    transaction_id: str
    time: float
    account_id: str
    card_id: str | None
    merchant_id: str
    device_id: str | None
    ip: str | None
    country: str
    amount: float
    lat: float | None
    lon: float | None
    raw: bytes


def _text(data: dict[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise MalformedTransactionError("missing_field" if value is None else "bad_field", f"{name}={value!r}")
    return value


def _coordinate(data: dict[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedTransactionError("bad_field", f"{name}={value!r}")
    return float(value)


def decode_transaction(raw: bytes) -> Tx:
    """Decode one `tx.valid` value, or raise `MalformedTransactionError`."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedTransactionError("invalid_json", str(exc)) from None
    if not isinstance(data, dict):
        raise MalformedTransactionError("invalid_json", "not a JSON object")
    if data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise MalformedTransactionError("unsupported_schema_version", repr(data.get("schema_version")))
    occurred = _text(data, "occurred_at")
    assert occurred is not None
    try:
        moment = datetime.fromisoformat(occurred)
        time = epoch_seconds(moment)
    except (ValueError, ArithmeticError, FeaturesError) as exc:
        raise MalformedTransactionError("bad_field", f"occurred_at={occurred!r}: {exc}") from None
    amount_value = data.get("amount")
    if isinstance(amount_value, bool) or not isinstance(amount_value, str | int | float):
        raise MalformedTransactionError("bad_field", f"amount={amount_value!r}")
    try:
        amount = float(amount_value)
    except ValueError:
        raise MalformedTransactionError("bad_field", f"amount={amount_value!r}") from None
    if not math.isfinite(amount) or amount <= 0:
        raise MalformedTransactionError("bad_field", f"amount={amount_value!r}")
    lat = _coordinate(data, "lat")
    lon = _coordinate(data, "lon")
    if (lat is None) != (lon is None):
        lat = lon = None
    country = _text(data, "country")
    assert country is not None
    return Tx(
        transaction_id=str(_text(data, "transaction_id")),
        time=time,
        account_id=str(_text(data, "account_id")),
        card_id=_text(data, "card_id", optional=True),
        merchant_id=str(_text(data, "merchant_id")),
        device_id=_text(data, "device_id", optional=True),
        ip=_text(data, "ip", optional=True),
        country=country.upper(),
        amount=amount,
        lat=lat,
        lon=lon,
        raw=raw,
    )


def features_dict(row: np.ndarray) -> dict[str, float | None]:
    """One matrix row as the `features` mapping (NaN becomes None)."""
    return {name: (None if value != value else value) for name, value in zip(_NAMES, row.tolist(), strict=True)}


def encode_vectors(raws: list[bytes], rows: np.ndarray, late: list[bool]) -> list[bytes]:
    """`FeatureVector` JSON for each (transaction JSON, feature row, late flag)."""
    encoded = []
    dumps = orjson.dumps
    fragment = orjson.Fragment
    names = _NAMES
    for raw, values, is_late in zip(raws, rows.tolist(), late, strict=True):
        # orjson writes NaN as null, which is exactly "undefined" in the contract.
        encoded.append(
            dumps(
                {
                    "schema_version": SCHEMA_VERSION,
                    "transaction": fragment(raw),
                    "features": dict(zip(names, values, strict=True)),
                    "feature_set_version": FEATURE_SET_VERSION,
                    "late": is_late,
                }
            )
        )
    return encoded
