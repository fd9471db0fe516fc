"""Fast decoding of `tx.valid` messages and encoding of `FeatureVector` JSON (no pydantic in the hot loop).

`decode_transaction` checks only what the features need; ingestion already
validated the full contract. The output embeds the input transaction JSON
verbatim, so the transaction travels unchanged; tests check the result against
the pydantic `FeatureVector` model. Both directions avoid one Python object per
field where they can: they are most of the stage's CPU time.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Final, NamedTuple

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


class Tx(NamedTuple):
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


def _present(value: object) -> bool:
    return type(value) is str and value != ""


def _optional(value: object) -> bool:
    return value is None or (type(value) is str and value != "")


def _number(value: object) -> bool:
    return type(value) is float or type(value) is int


def decode_transaction(raw: bytes) -> Tx:
    """Decode one `tx.valid` value, or raise `MalformedTransactionError`."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedTransactionError("invalid_json", str(exc)) from None
    if type(data) is not dict:
        raise MalformedTransactionError("invalid_json", "not a JSON object")
    get: Any = data.get
    txid, occurred, account = get("transaction_id"), get("occurred_at"), get("account_id")
    merchant, country, amount_value = get("merchant_id"), get("country"), get("amount")
    card, device, ip, lat, lon = get("card_id"), get("device_id"), get("ip"), get("lat"), get("lon")
    # Fast path for the well-formed messages ingestion writes; anything odd takes the careful
    # path below, which names the problem.
    if (
        get("schema_version", SCHEMA_VERSION) == SCHEMA_VERSION
        and _present(txid)
        and _present(occurred)
        and _present(account)
        and _present(merchant)
        and _present(country)
        and _optional(card)
        and _optional(device)
        and _optional(ip)
        and type(amount_value) is str
        and (lat is None or _number(lat))
        and (lon is None or _number(lon))
    ):
        try:
            moment = datetime.fromisoformat(occurred)
            amount = float(amount_value)
        except ValueError:
            return _decode_carefully(data, raw)
        if moment.tzinfo is not None and amount > 0 and amount < math.inf:
            if lat is None or lon is None or not (math.isfinite(lat) and math.isfinite(lon)):
                lat = lon = None
            return Tx(
                txid,
                moment.timestamp(),
                account,
                card,
                merchant,
                device,
                ip,
                country.upper(),
                amount,
                None if lat is None else float(lat),
                None if lon is None else float(lon),
                raw,
            )
    return _decode_carefully(data, raw)


def _decode_carefully(data: dict[str, Any], raw: bytes) -> Tx:
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


# orjson writes a float matrix natively (NaN as null: "undefined" in the contract); the names are
# then put in front of each value by one C-level bytes format per row instead of a dict per row.
_FEATURES_TEMPLATE: Final = b"{" + b",".join(b'"%s":%%s' % name.encode() for name in FEATURE_NAMES) + b"}"
_VECTOR_TEMPLATE: Final = (
    b'{"schema_version":%d,"transaction":%%s,"features":%%s,"feature_set_version":%d,"late":%%s}'
    % (SCHEMA_VERSION, FEATURE_SET_VERSION)
)


def encode_vectors(raws: list[bytes], rows: np.ndarray, late: list[bool]) -> list[bytes]:
    """`FeatureVector` JSON for each (transaction JSON, feature row, late flag)."""
    if len(raws) == 0:
        return []
    if rows.shape != (len(raws), len(FEATURE_NAMES)) or len(late) != len(raws):
        raise ValueError("one feature row and one late flag per transaction")
    matrix = orjson.dumps(np.ascontiguousarray(rows, dtype=np.float64), option=orjson.OPT_SERIALIZE_NUMPY)
    lines = matrix[2:-2].split(b"],[")
    features = _FEATURES_TEMPLATE
    vector = _VECTOR_TEMPLATE
    return [
        vector % (raw, features % tuple(line.split(b",")), b"true" if is_late else b"false")
        for raw, line, is_late in zip(raws, lines, late, strict=True)
    ]
