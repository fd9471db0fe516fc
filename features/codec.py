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
from itertools import repeat
from typing import Any, Final, NamedTuple

import numpy as np
import orjson
from numba import njit

from core.contracts import FEATURE_NAMES_BY_VERSION, SCHEMA_VERSION
from features.engine import Batch, entity_keys, epoch_seconds
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
    tenant_id: str


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
    txid, occurred, account, tenant = get("transaction_id"), get("occurred_at"), get("account_id"), get("tenant_id")
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
        and type(tenant) is str
        and tenant
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
                tenant,
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
        tenant_id=str(_text(data, "tenant_id")),
    )


def batch_of(transactions: list[Tx], apply: list[bool]) -> Batch:
    """The engine's columns from decoded transactions: one C-level transpose, then the entity keys."""
    if not transactions:
        return Batch.empty()
    (_, times, accounts, cards, merchants, devices, ips, countries, amounts, lats, lons, _, tenants) = map(
        list, zip(*transactions, strict=True)
    )
    return Batch(
        times,
        entity_keys(tenants, accounts),
        entity_keys(tenants, cards),
        entity_keys(tenants, merchants),
        entity_keys(tenants, devices),
        entity_keys(tenants, ips),
        countries,
        amounts,
        lats,
        lons,
        apply,
    )


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


# --- batch decoding -----------------------------------------------------------------------
#
# `decode_transactions` scans a whole micro-batch with one Numba pass instead of building a
# Python dict (and an object per field) for every message with orjson: the features need 11 of
# the ~18 fields, and the dict was most of the decode cost. The scanner accepts a strict subset
# of JSON it validates completely (ASCII, no escapes, no exponents, bounded number lengths and
# nesting) and only the field values ingestion writes (strings, `null`, plain decimals, UTC
# times `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff](Z|+00:00)`); any other message takes
# `decode_transaction`, so results and dead-letter reasons are exactly the per-message ones
# (tests/features/test_codec.py checks both paths agree on generated and mangled messages).
_FIELDS: Final = (
    "schema_version",
    "transaction_id",
    "occurred_at",
    "account_id",
    "card_id",
    "merchant_id",
    "device_id",
    "ip",
    "country",
    "amount",
    "lat",
    "lon",
    "tenant_id",
)
_SCHEMA, _TXID, _OCCURRED, _ACCOUNT, _CARD, _MERCHANT, _DEVICE, _IP, _COUNTRY, _AMOUNT, _LAT, _LON, _TENANT = range(13)
_FIELD_BYTES: Final = _bytes_array("".join(_FIELDS).encode())
_FIELD_OFFSETS: Final = np.concatenate(([0], np.cumsum([len(name) for name in _FIELDS]))).astype(np.int64)
# What a field's value was: absent, null, a string, an integer literal, a plain decimal, or other.
_ABSENT, _NULL, _STRING, _INTEGER, _DECIMAL, _OTHER = range(6)
_MAX_DEPTH: Final = 64  # orjson's limit is 1,024; deeper messages take the per-message path
_MAX_NUMBER: Final = 40  # longer number literals (huge or overflowing values) take it too
_EXACT_DIGITS: Final = 15  # decimal m / 10**k with m < 10**15 is one correctly rounded division
_POWERS: Final = np.array([10.0**k for k in range(23)])  # exact doubles
# Up to this year, epoch microseconds stay below 2**53, so us / 1e6 equals Python's int division.
_LAST_YEAR: Final = 2200
# Coordinates: 0 = none, 1 = parsed here, 2 = more digits than an exact division allows (Python parses).
_NO_VALUE, _PARSED, _TEXT = 0, 1, 2


@njit(cache=True, inline="always")
def _skip_space(buf: np.ndarray, p: int, end: int) -> int:  # pragma: no cover - compiled
    while p < end and (buf[p] == 32 or buf[p] == 10 or buf[p] == 13 or buf[p] == 9):
        p += 1
    return p


@njit(cache=True)
def _string_end(buf: np.ndarray, p: int, end: int) -> int:  # pragma: no cover - compiled
    """Position after the string opening at `p` (a '"'); -1 for escapes, control or non-ASCII bytes."""
    q = p + 1
    while q < end:
        c = buf[q]
        if c == 34:
            return q + 1
        if c == 92 or c < 32 or c >= 128:
            return -1
        q += 1
    return -1


@njit(cache=True, inline="always")
def _member_key_end(buf: np.ndarray, p: int, end: int) -> int:  # pragma: no cover - compiled
    """Position after an object member's `"key":` starting at `p`; -1 if there is none."""
    if p >= end or buf[p] != 34:
        return -1
    p = _string_end(buf, p, end)
    if p < 0:
        return -1
    p = _skip_space(buf, p, end)
    if p >= end or buf[p] != 58:
        return -1
    return p + 1


@njit(cache=True)
def _number_end(buf: np.ndarray, p: int, end: int) -> tuple[int, int]:  # pragma: no cover - compiled
    """(position after, _INTEGER or _DECIMAL) for `-?(0|[1-9][0-9]*)(.[0-9]+)?`; (-1, 0) otherwise."""
    q = p
    if q < end and buf[q] == 45:  # "-"
        q += 1
    if q >= end or buf[q] < 48 or buf[q] > 57:
        return -1, 0
    if buf[q] == 48:
        q += 1
    else:
        while q < end and 48 <= buf[q] <= 57:
            q += 1
    kind = _INTEGER
    if q < end and buf[q] == 46:  # "."
        q += 1
        if q >= end or buf[q] < 48 or buf[q] > 57:
            return -1, 0
        while q < end and 48 <= buf[q] <= 57:
            q += 1
        kind = _DECIMAL
    if q < end and (buf[q] == 101 or buf[q] == 69):  # exponents: the per-message path
        return -1, 0
    # Integer literals beyond 18 digits become floats or errors in orjson: the per-message path.
    if q - p > _MAX_NUMBER or (kind == _INTEGER and q - p > 18):
        return -1, 0
    return q, kind


@njit(cache=True)
def _value_end(buf: np.ndarray, p: int, end: int, stack: np.ndarray) -> int:  # pragma: no cover - compiled
    """Position after the JSON value starting at `p` (validated); -1 when outside the scanned subset."""
    depth = 0
    while True:
        # A value is expected at p.
        p = _skip_space(buf, p, end)
        if p >= end:
            return -1
        c = buf[p]
        if c == 123 or c == 91:  # "{" or "["
            if depth == stack.shape[0]:
                return -1
            stack[depth] = c
            depth += 1
            p = _skip_space(buf, p + 1, end)
            if p < end and buf[p] == c + 2:  # "}" or "]": empty
                p += 1
                depth -= 1
            else:
                if c == 123:  # a key and ":" before the member's value
                    p = _member_key_end(buf, p, end)
                    if p < 0:
                        return -1
                continue
        elif c == 34:
            p = _string_end(buf, p, end)
            if p < 0:
                return -1
        elif c == 45 or 48 <= c <= 57:
            p, _ = _number_end(buf, p, end)
            if p < 0:
                return -1
        elif c == 110 and p + 4 <= end and buf[p + 1] == 117 and buf[p + 2] == 108 and buf[p + 3] == 108:
            p += 4  # null
        elif c == 116 and p + 4 <= end and buf[p + 1] == 114 and buf[p + 2] == 117 and buf[p + 3] == 101:
            p += 4  # true
        elif (
            c == 102
            and p + 5 <= end
            and buf[p + 1] == 97
            and buf[p + 2] == 108
            and buf[p + 3] == 115
            and buf[p + 4] == 101
        ):
            p += 5  # false
        else:
            return -1
        # After a complete value: close containers or go on with the next element.
        while True:
            if depth == 0:
                return p
            p = _skip_space(buf, p, end)
            if p >= end:
                return -1
            c = buf[p]
            top = stack[depth - 1]
            if c == 44:  # ","
                p += 1
                if top == 123:
                    p = _member_key_end(buf, _skip_space(buf, p, end), end)
                    if p < 0:
                        return -1
                break
            if c == top + 2:
                p += 1
                depth -= 1
            else:
                return -1


@njit(cache=True)
def _field_of(
    buf: np.ndarray, start: int, stop: int, names: np.ndarray, offsets: np.ndarray
) -> int:  # pragma: no cover
    """Index of the key `buf[start:stop]` among the wanted fields, or -1."""
    size = stop - start
    for f in range(offsets.shape[0] - 1):
        a = offsets[f]
        if offsets[f + 1] - a != size:
            continue
        same = True
        for k in range(size):
            if buf[start + k] != names[a + k]:
                same = False
                break
        if same:
            return f
    return -1


@njit(cache=True)
def _digits(buf: np.ndarray, p: int, count: int) -> int:  # pragma: no cover - compiled
    """The decimal number `buf[p:p+count]`, or -1 when a byte is not a digit."""
    value = 0
    for k in range(count):
        c = buf[p + k]
        if c < 48 or c > 57:
            return -1
        value = value * 10 + (c - 48)
    return value


@njit(cache=True)
def _epoch_micros(buf: np.ndarray, p: int, end: int) -> tuple[bool, int]:  # pragma: no cover - compiled
    """Microseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff](Z|+00:00)` in `buf[p:end]`."""
    size = end - p
    if size >= 1 and buf[end - 1] == 90:  # "Z"
        zone = 1
    elif (
        size >= 6
        and buf[end - 6] == 43
        and buf[end - 5] == 48
        and buf[end - 4] == 48
        and buf[end - 3] == 58
        and buf[end - 2] == 48
        and buf[end - 1] == 48
    ):  # "+00:00"
        zone = 6
    else:
        return False, 0
    fraction = size - zone - 19
    if fraction != 0 and fraction != 4 and fraction != 7:
        return False, 0
    if buf[p + 4] != 45 or buf[p + 7] != 45 or buf[p + 10] != 84 or buf[p + 13] != 58 or buf[p + 16] != 58:
        return False, 0
    year = _digits(buf, p, 4)
    month = _digits(buf, p + 5, 2)
    day = _digits(buf, p + 8, 2)
    hour = _digits(buf, p + 11, 2)
    minute = _digits(buf, p + 14, 2)
    second = _digits(buf, p + 17, 2)
    micros = 0
    if fraction:
        if buf[p + 19] != 46:
            return False, 0
        micros = _digits(buf, p + 20, fraction - 1)
        if fraction == 4:
            micros *= 1000
    if min(year, month, day, hour, minute, second, micros) < 0:
        return False, 0
    if year < 1900 or year > _LAST_YEAR or month < 1 or month > 12 or hour > 23 or minute > 59 or second > 59:
        return False, 0
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if month == 2:
        month_days = 29 if leap else 28
    elif month == 4 or month == 6 or month == 9 or month == 11:
        month_days = 30
    else:
        month_days = 31
    if day < 1 or day > month_days:
        return False, 0
    # Days since 1970-01-01 (H. Hinnant's days_from_civil).
    y = year - (1 if month <= 2 else 0)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return True, ((days * 24 + hour) * 60 + minute) * 60 * 1_000_000 + second * 1_000_000 + micros


@njit(cache=True)
def _plain_decimal(buf: np.ndarray, p: int, end: int, powers: np.ndarray) -> tuple[int, float]:  # pragma: no cover
    """(_PARSED, value) for `-?digits[.digits]` of at most 15 digits (exact: one division), else (_TEXT, 0)."""
    negative = buf[p] == 45
    q = p + 1 if negative else p
    mantissa = 0
    digits = 0
    scale = -1
    while q < end:
        c = buf[q]
        if c == 46:
            if scale >= 0:
                return _TEXT, 0.0
            scale = 0
        elif 48 <= c <= 57:
            mantissa = mantissa * 10 + (c - 48)
            digits += 1
            if scale >= 0:
                scale += 1
        else:
            return _TEXT, 0.0
        q += 1
    if digits == 0 or digits > _EXACT_DIGITS or scale == 0:
        return _TEXT, 0.0
    value = float(mantissa) / powers[scale] if scale > 0 else float(mantissa)
    return _PARSED, (-value if negative else value)


@njit(cache=True)
def _digits_signed(buf: np.ndarray, p: int, end: int) -> int:  # pragma: no cover - compiled
    """An integer literal `-?digits` (at most 18 digits: checked by the scan)."""
    negative = buf[p] == 45
    value = _digits(buf, p + 1, end - p - 1) if negative else _digits(buf, p, end - p)
    return -value if negative else value


@njit(cache=True)
def _scan_batch(
    buf: np.ndarray,
    bounds: np.ndarray,
    names: np.ndarray,
    name_offsets: np.ndarray,
    powers: np.ndarray,
    starts: np.ndarray,
    stops: np.ndarray,
    times: np.ndarray,
    amounts: np.ndarray,
    coordinates: np.ndarray,
    coordinate_kinds: np.ndarray,
    ok: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Scan each message `buf[bounds[i]:bounds[i+1]]`; `ok[i]` when it is in the subset and well-formed."""
    stack = np.empty(_MAX_DEPTH, dtype=np.uint8)
    n_fields = name_offsets.shape[0] - 1
    kinds = np.empty(n_fields, dtype=np.int64)
    for i in range(bounds.shape[0] - 1):
        ok[i] = False
        end = bounds[i + 1]
        kinds[:] = _ABSENT
        p = _skip_space(buf, bounds[i], end)
        if p >= end or buf[p] != 123:
            continue
        p = _skip_space(buf, p + 1, end)
        valid = True
        if p < end and buf[p] == 125:
            p += 1
        else:
            while True:
                if p >= end or buf[p] != 34:
                    valid = False
                    break
                key_end = _string_end(buf, p, end)
                if key_end < 0:
                    valid = False
                    break
                field = _field_of(buf, p + 1, key_end - 1, names, name_offsets)
                p = _skip_space(buf, key_end, end)
                if p >= end or buf[p] != 58:
                    valid = False
                    break
                p = _skip_space(buf, p + 1, end)
                value_end = _value_end(buf, p, end, stack)
                if value_end < 0:
                    valid = False
                    break
                if field >= 0:  # the last of duplicate keys wins, as in orjson's dict
                    c = buf[p]
                    if c == 34:
                        kinds[field] = _STRING
                        starts[field, i] = p + 1
                        stops[field, i] = value_end - 1
                    elif c == 110:
                        kinds[field] = _NULL
                    elif c == 45 or 48 <= c <= 57:
                        kinds[field] = _INTEGER
                        for k in range(p, value_end):
                            if buf[k] == 46:  # "."
                                kinds[field] = _DECIMAL
                        starts[field, i] = p
                        stops[field, i] = value_end
                    else:
                        kinds[field] = _OTHER
                p = _skip_space(buf, value_end, end)
                if p < end and buf[p] == 44:
                    p = _skip_space(buf, p + 1, end)
                    continue
                if p < end and buf[p] == 125:
                    p += 1
                    break
                valid = False
                break
        if not valid or _skip_space(buf, p, end) != end:
            continue
        # The fields, as the per-message fast path requires them.
        if kinds[_SCHEMA] != _ABSENT and not (
            kinds[_SCHEMA] == _INTEGER and stops[_SCHEMA, i] - starts[_SCHEMA, i] == 1 and buf[starts[_SCHEMA, i]] == 49
        ):
            continue  # schema_version other than 1 (SCHEMA_VERSION, checked at import)
        required = True
        for field in (_TXID, _OCCURRED, _ACCOUNT, _MERCHANT, _COUNTRY, _AMOUNT, _TENANT):
            if kinds[field] != _STRING or stops[field, i] == starts[field, i]:
                required = False
        for field in (_CARD, _DEVICE, _IP):
            if kinds[field] == _STRING:
                if stops[field, i] == starts[field, i]:
                    required = False
            elif kinds[field] == _ABSENT or kinds[field] == _NULL:
                starts[field, i] = stops[field, i] = 0  # None
            else:
                required = False
        if not required:
            continue
        parsed, micros = _epoch_micros(buf, starts[_OCCURRED, i], stops[_OCCURRED, i])
        if not parsed:
            continue
        times[i] = micros / 1_000_000
        parsed_amount, amount = _plain_decimal(buf, starts[_AMOUNT, i], stops[_AMOUNT, i], powers)
        if parsed_amount != _PARSED or buf[starts[_AMOUNT, i]] == 45 or not amount > 0.0:
            continue
        amounts[i] = amount
        located = True
        for j in range(2):
            field = _LAT + j
            kind = kinds[field]
            if kind <= _NULL:  # absent or null
                located = False
            elif kind == _INTEGER:
                coordinates[i, j] = float(_digits_signed(buf, starts[field, i], stops[field, i]))
                coordinate_kinds[i, j] = _PARSED
            elif kind == _DECIMAL:
                coordinate_kinds[i, j], coordinates[i, j] = _plain_decimal(
                    buf, starts[field, i], stops[field, i], powers
                )
            else:
                located = False
                required = False
        if not required:
            continue
        if not located:
            coordinate_kinds[i, 0] = coordinate_kinds[i, 1] = _NO_VALUE
        ok[i] = True


class Decoded(NamedTuple):
    """A micro-batch decoded: the well-formed messages' transactions in input order, and the others."""

    transactions: list[Tx]
    malformed: dict[int, MalformedTransactionError]  # input index -> why (dead-letter reason)


def decode_transactions(values: list[bytes]) -> Decoded:
    """Decode a micro-batch of `tx.valid` values: the same results as `decode_transaction` on each."""
    n = len(values)
    if n == 0:
        return Decoded([], {})
    joined = b"".join(values)
    bounds = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, values), dtype=np.int64, count=n), out=bounds[1:])
    starts = np.zeros((len(_FIELDS), n), dtype=np.int64)
    stops = np.zeros((len(_FIELDS), n), dtype=np.int64)
    times = np.zeros(n)
    amounts = np.zeros(n)
    coordinates = np.zeros((n, 2))
    coordinate_kinds = np.zeros((n, 2), dtype=np.int64)
    ok = np.zeros(n, dtype=np.bool_)
    _scan_batch(
        _bytes_array(joined),
        bounds,
        _FIELD_BYTES,
        _FIELD_OFFSETS,
        _POWERS,
        starts,
        stops,
        times,
        amounts,
        coordinates,
        coordinate_kinds,
        ok,
    )
    # One byte per character, so byte offsets index the text (the scanned messages are ASCII).
    text = joined.decode("latin-1")

    def strings(field: int) -> list[str]:
        return [text[a:b] for a, b in zip(starts[field].tolist(), stops[field].tolist(), strict=True)]

    def optional(field: int) -> list[str | None]:
        return [text[a:b] or None for a, b in zip(starts[field].tolist(), stops[field].tolist(), strict=True)]

    texts = np.flatnonzero(coordinate_kinds.ravel() == _TEXT)
    if texts.size:  # more digits than one exact division: strtod, correctly rounded like orjson
        rows, fields = np.divmod(texts, 2)
        fields += _LAT
        parts = [text[a:b] for a, b in zip(starts[fields, rows].tolist(), stops[fields, rows].tolist(), strict=True)]
        parsed = np.fromstring(",".join(parts), sep=",")
        coordinates.ravel()[texts] = parsed if parsed.shape[0] == len(parts) else [float(part) for part in parts]
    missing = coordinate_kinds[:, 0] == _NO_VALUE
    lats: Any = coordinates[:, 0].astype(object)
    lons: Any = coordinates[:, 1].astype(object)
    lats[missing] = lons[missing] = None
    transactions: list[Tx] = list(
        map(
            tuple.__new__,
            repeat(Tx),
            zip(
                strings(_TXID),
                times.tolist(),
                strings(_ACCOUNT),
                optional(_CARD),
                strings(_MERCHANT),
                optional(_DEVICE),
                optional(_IP),
                [country.upper() for country in strings(_COUNTRY)],
                amounts.tolist(),
                lats.tolist(),
                lons.tolist(),
                values,
                strings(_TENANT),
                strict=True,
            ),
        )
    )
    malformed: dict[int, MalformedTransactionError] = {}
    others = np.flatnonzero(~ok).tolist()
    if others:  # outside the scanned subset: the per-message decoder decides, reasons and all
        for i in others:
            try:
                transactions[i] = decode_transaction(values[i])
            except MalformedTransactionError as exc:
                malformed[i] = exc
        if malformed:
            transactions = [tx for i, tx in enumerate(transactions) if i not in malformed]
    return Decoded(transactions, malformed)


def encode_vectors(raws: list[bytes], rows: np.ndarray, late: list[bool], *, form: str = "compact") -> list[bytes]:
    """`FeatureVector` JSON for each (transaction JSON, feature row, late flag); see `VectorEncoder`."""
    return VectorEncoder(form).encode(raws, rows, late)
