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
from numba import njit

from core.contracts import FEATURE_NAMES_BY_VERSION, SCHEMA_VERSION
from features.engine import Batch, epoch_seconds
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
    # Fast path for the well-formed messages ingestion writes (checks inlined: this runs for every
    # message); anything odd takes the careful path below, which names the problem.
    if (
        get("schema_version", SCHEMA_VERSION) == SCHEMA_VERSION
        and type(txid) is str
        and txid
        and type(occurred) is str
        and occurred
        and type(account) is str
        and account
        and type(merchant) is str
        and merchant
        and type(country) is str
        and country
        and (card is None or (type(card) is str and card))
        and (device is None or (type(device) is str and device))
        and (ip is None or (type(ip) is str and ip))
        and type(amount_value) is str
        and (lat is None or type(lat) is float or type(lat) is int)
        and (lon is None or type(lon) is float or type(lon) is int)
    ):
        try:
            moment = datetime.fromisoformat(occurred)
            amount = float(amount_value)
        except ValueError:
            return _decode_carefully(data, raw)
        if moment.tzinfo is not None and 0 < amount < math.inf:
            if lat is None or lon is None or not (math.isfinite(lat) and math.isfinite(lon)):
                lat = lon = None
            else:
                lat, lon = float(lat), float(lon)
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
                lat,
                lon,
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


def batch_of(transactions: list[Tx], apply: list[bool]) -> Batch:
    """The engine's columns from decoded transactions (one C-level transpose, no per-row Python)."""
    if not transactions:
        return Batch.empty()
    (_, times, accounts, cards, merchants, devices, ips, countries, amounts, lats, lons, _) = map(
        list, zip(*transactions, strict=True)
    )
    return Batch(times, accounts, cards, merchants, devices, ips, countries, amounts, lats, lons, apply)


def features_dict(row: np.ndarray) -> dict[str, float | None]:
    """One matrix row as the `features` mapping (NaN becomes None)."""
    return {name: (None if value != value else value) for name, value in zip(_NAMES, row.tolist(), strict=True)}


# orjson writes the whole float matrix in one call (shortest round-trip floats, NaN as null:
# "undefined" in the contract); a Numba kernel then cuts it into rows and joins each with the
# transaction JSON into one buffer (no Python formatting per row).
#
# Two forms (`core.contracts.FeatureVector` reads both): "compact" (the default) writes the row as
# `"feature_values":[...]` in registry order (`core.contracts.FEATURE_NAMES_BY_VERSION`); "named"
# writes `"features":{"name":value,...}`, 2.6x the bytes (~5.3 KB against ~2.0 KB per vector) and
# more CPU to interleave, kept for consumers older than the compact form.
VECTOR_FORMS: Final = ("compact", "named")
_VECTOR_HEAD: Final = b'{"schema_version":%d,"transaction":' % SCHEMA_VERSION
_VECTOR_MIDDLE: Final = b',"features":'
_COMPACT_MIDDLE: Final = b',"feature_values":'
_VECTOR_TAIL: Final = b',"feature_set_version":%d,"late":' % FEATURE_SET_VERSION
_PREFIXES: Final = [(b"{" if index == 0 else b",") + b'"%s":' % name.encode() for index, name in enumerate(_NAMES)]


def _bytes_array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


_NAME_BYTES: Final = _bytes_array(b"".join(_PREFIXES))
_NAME_OFFSETS: Final = np.concatenate(([0], np.cumsum([len(p) for p in _PREFIXES]))).astype(np.int64)
_HEAD: Final = _bytes_array(_VECTOR_HEAD)
_MIDDLE: Final = _bytes_array(_VECTOR_MIDDLE)
_COMPACT: Final = _bytes_array(_COMPACT_MIDDLE)
_TAIL: Final = _bytes_array(_VECTOR_TAIL)
_TRUE: Final = _bytes_array(b"true}")
_FALSE: Final = _bytes_array(b"false}")


@njit(cache=True, inline="always")
def _put(out: np.ndarray, at: int, data: np.ndarray) -> int:  # pragma: no cover - compiled
    """Copy `data` into `out` at `at`; returns the position after it."""
    k: int = data.shape[0]
    out[at : at + k] = data
    return at + k


@njit(cache=True)
def _interleave(
    values: np.ndarray,
    n_columns: int,
    raws: np.ndarray,
    raw_offsets: np.ndarray,
    late: np.ndarray,
    names: np.ndarray,
    name_offsets: np.ndarray,
    head: np.ndarray,
    middle: np.ndarray,
    tail: np.ndarray,
    true: np.ndarray,
    false: np.ndarray,
    out: np.ndarray,
    ends: np.ndarray,
) -> None:
    """Write one named-form FeatureVector JSON per row of `values` (orjson's `[[v,v],[v,v]]`) into `out`."""
    at = 0
    p = 2  # past "[["
    for i in range(raw_offsets.shape[0] - 1):
        at = _put(out, at, head)
        at = _put(out, at, raws[raw_offsets[i] : raw_offsets[i + 1]])
        at = _put(out, at, middle)
        for j in range(n_columns):
            at = _put(out, at, names[name_offsets[j] : name_offsets[j + 1]])
            q = p
            while values[q] != 44 and values[q] != 93:  # up to the next "," or "]"
                q += 1
            at = _put(out, at, values[p:q])
            p = q + (1 if j < n_columns - 1 else 3)  # skip "," inside a row, "],[" between rows
        out[at] = 125  # "}" closes the features object
        at += 1
        at = _put(out, at, tail)
        at = _put(out, at, true if late[i] else false)
        ends[i] = at


@njit(cache=True)
def _join_rows(
    values: np.ndarray,
    raws: np.ndarray,
    raw_offsets: np.ndarray,
    late: np.ndarray,
    head: np.ndarray,
    middle: np.ndarray,
    tail: np.ndarray,
    true: np.ndarray,
    false: np.ndarray,
    out: np.ndarray,
    ends: np.ndarray,
) -> None:
    """Write one compact-form FeatureVector JSON per row of `values` (orjson's `[[v,v],[v,v]]`) into `out`."""
    at = 0
    p = 1  # the first row's "["
    for i in range(raw_offsets.shape[0] - 1):
        at = _put(out, at, head)
        at = _put(out, at, raws[raw_offsets[i] : raw_offsets[i + 1]])
        at = _put(out, at, middle)
        q = p
        while values[q] != 93:  # the row's "]" (numbers and null contain no brackets)
            q += 1
        at = _put(out, at, values[p : q + 1])
        p = q + 2  # past "],"
        at = _put(out, at, tail)
        at = _put(out, at, true if late[i] else false)
        ends[i] = at


class VectorEncoder:
    """Encodes `FeatureVector` JSON into a buffer it keeps between calls.

    Reusing the buffer matters: a fresh multi-megabyte array per micro-batch costs a page fault
    per 4 KB on first touch. One encoder per thread (the stage has one).
    """

    def __init__(self, form: str = "compact") -> None:
        if form not in VECTOR_FORMS:
            raise FeaturesError(f"vector form must be one of {', '.join(VECTOR_FORMS)}")
        if form == "compact" and FEATURE_NAMES_BY_VERSION.get(FEATURE_SET_VERSION) != _NAMES:
            # Consumers name the values by core's list: a registry change needs a new version there.
            raise FeaturesError(f"core.contracts has no name list matching feature set {FEATURE_SET_VERSION}")
        self._named = form == "named"
        self._out = np.empty(0, dtype=np.uint8)

    def encode(self, raws: list[bytes], rows: np.ndarray, late: list[bool]) -> list[bytes]:
        """`FeatureVector` JSON for each (transaction JSON, feature row, late flag)."""
        n = len(raws)
        if n == 0:
            return []
        if rows.shape != (n, len(_NAMES)) or len(late) != n:
            raise ValueError("one feature row and one late flag per transaction")
        matrix = orjson.dumps(np.ascontiguousarray(rows, dtype=np.float64), option=orjson.OPT_SERIALIZE_NUMPY)
        joined = b"".join(raws)
        raw_offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, raws), dtype=np.int64, count=n), out=raw_offsets[1:])
        # Upper bound: every value and transaction byte, plus the fixed parts of each vector.
        fixed = len(_VECTOR_HEAD) + len(_COMPACT_MIDDLE) + int(_NAME_OFFSETS[-1]) + 1 + len(_VECTOR_TAIL) + 6
        size = len(matrix) + len(joined) + n * fixed
        if self._out.shape[0] < size:
            self._out = np.empty(size + size // 4, dtype=np.uint8)
        out = self._out
        ends = np.empty(n, dtype=np.int64)
        flags = np.array(late, dtype=np.bool_)
        if self._named:
            _interleave(
                _bytes_array(matrix),
                len(_NAMES),
                _bytes_array(joined),
                raw_offsets,
                flags,
                _NAME_BYTES,
                _NAME_OFFSETS,
                _HEAD,
                _MIDDLE,
                _TAIL,
                _TRUE,
                _FALSE,
                out,
                ends,
            )
        else:
            _join_rows(
                _bytes_array(matrix),
                _bytes_array(joined),
                raw_offsets,
                flags,
                _HEAD,
                _COMPACT,
                _TAIL,
                _TRUE,
                _FALSE,
                out,
                ends,
            )
        data = out[: ends[-1]].tobytes()
        bounds = [0, *ends.tolist()]
        return [data[bounds[i] : bounds[i + 1]] for i in range(n)]


def encode_vectors(raws: list[bytes], rows: np.ndarray, late: list[bool], *, form: str = "compact") -> list[bytes]:
    """`FeatureVector` JSON for each (transaction JSON, feature row, late flag); see `VectorEncoder`."""
    return VectorEncoder(form).encode(raws, rows, late)
