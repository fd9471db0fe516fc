"""Validation of raw transactions: bytes in, a normalised transaction or a reject reason out.

`core.contracts.Transaction` is the contract. Running it per message costs ~65 µs on
this machine, so the common shape goes through an exact fast path that accepts only
inputs it can prove the contract accepts, with identical normalised values; anything
else (every invalid message, and rare valid shapes such as padded strings) is decided
by the pydantic model itself. `tests/ingestion/test_validate_properties.py` checks the
two agree with hypothesis.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from ipaddress import IPv6Address
from typing import Any, Final, NamedTuple

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from core.contracts import (
    MAX_AMOUNT,
    MAX_ATTRIBUTES,
    TRANSACTION_FIELDS,
    Channel,
    Transaction,
    currency_minor_units,
)
from ingestion.reasons import RejectReason

# Column order of the `transactions` table (minus ingested_at/source_ref, added per batch)
# and of the JSON written to `tx.valid`.
FIELDS: Final = ("schema_version", *TRANSACTION_FIELDS)
_REQUIRED: Final = frozenset(
    (
        *("transaction_id", "occurred_at", "tenant_id", "account_id", "merchant_id", "merchant_category"),
        *("amount", "currency", "channel", "country"),
    )
)
# `ingested_at` is left to the model: producers should not send it, and if they do it must still be valid.
_FAST_KEYS: Final = frozenset(FIELDS)

_CHANNELS: Final = frozenset(channel.value for channel in Channel)
_QUANTUM: Final = {scale: Decimal(1).scaleb(-scale) for scale in range(5)}
_INT64: Final = 2**63
_MAX_AMOUNT_FLOAT: Final = float(MAX_AMOUNT)
_MAX_AMOUNT_INT: Final = int(MAX_AMOUNT)
_FLOAT_INT_LIMIT: Final = float(2**63)


_ID_PATTERN: Final = r"[A-Za-z0-9._:@-]{1,64}"
_ID = re.compile(_ID_PATTERN).fullmatch
# No sign, exponent, padding or leading zeros: such strings are their own canonical Decimal text.
_PLAIN_DECIMAL = re.compile(r"(?:0|[1-9][0-9]{0,9})(?:\.[0-9]{1,4})?").fullmatch
_TIMESTAMP_PATTERN: Final = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3}|\.[0-9]{6})?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
# transaction_id, tenant_id, account_id, merchant_id, merchant_category (MCC), channel, occurred_at.
_COMMON = re.compile(
    rf"{_ID_PATTERN}\x1f{_ID_PATTERN}\x1f{_ID_PATTERN}\x1f{_ID_PATTERN}\x1f[0-9]{{4}}"
    rf"\x1f(?:{'|'.join(sorted(re.escape(channel.value) for channel in Channel))})\x1f{_TIMESTAMP_PATTERN}"
).fullmatch
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}").fullmatch
_ATTRIBUTE_KEY = re.compile(r"[a-z][a-z0-9_]{0,39}").fullmatch
# Valid attribute keys seen so far: a handful of names repeat in every record (bounded against floods).
_ATTRIBUTE_KEYS_SEEN: Final[set[str]] = set()
_ATTRIBUTE_KEYS_CACHED: Final = 4096


def _known_codes() -> tuple[frozenset[str], frozenset[str]]:
    import pycountry

    return (
        frozenset(c.alpha_3 for c in pycountry.currencies),
        frozenset(c.alpha_2 for c in pycountry.countries),
    )


_CURRENCY_CODES, _COUNTRY_CODES = _known_codes()
_MINOR_UNITS: Final = {code: currency_minor_units(code) for code in _CURRENCY_CODES}


class Valid(NamedTuple):
    """A transaction the contract accepts, normalised (UTC time, amount at currency scale)."""

    transaction_id: str
    account_id: str
    occurred_at: datetime  # UTC
    fields: dict[str, Any]  # FIELDS order, JSON-ready; occurred_at as `utc_text` renders it


class Invalid(NamedTuple):
    """A message the contract (or the ingestion policy) refuses."""

    reason: RejectReason
    detail: str


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """How far `occurred_at` may be from the message's own timestamp.

    Measured against the Kafka record timestamp, not the wall clock, so replaying the
    same record after a crash always reaches the same decision.
    """

    max_future_seconds: float = 300.0
    max_age_seconds: float = 90 * 86_400.0

    def check(self, occurred_at: datetime, *, reference: float) -> Invalid | None:
        """None when `occurred_at` is inside the window around `reference` (epoch seconds)."""
        at = occurred_at.timestamp()
        if at > reference + self.max_future_seconds:
            return Invalid(
                RejectReason.OCCURRED_AT_IN_FUTURE,
                f"occurred_at {occurred_at.isoformat()} is more than {self.max_future_seconds:g}s "
                "ahead of the record timestamp",
            )
        if at < reference - self.max_age_seconds:
            return Invalid(
                RejectReason.OCCURRED_AT_TOO_OLD,
                f"occurred_at {occurred_at.isoformat()} is more than {self.max_age_seconds:g}s "
                "before the record timestamp",
            )
        return None


def utc_text(moment: datetime) -> str:
    """Canonical UTC text: ISO 8601, microseconds only when non-zero, "Z" (what tx.valid carries)."""
    text = moment.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# --- decoding ---------------------------------------------------------------------------------


def decode(raw: bytes | None, *, max_bytes: int) -> Any | Invalid:
    """Strict JSON decoding with a specific reason for each way it can fail."""
    if not raw:
        return Invalid(RejectReason.EMPTY_MESSAGE, "the message value is empty")
    if len(raw) > max_bytes:
        return Invalid(RejectReason.MESSAGE_TOO_LARGE, f"{len(raw)} bytes > limit of {max_bytes}")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson refuses NaN/Infinity and overflowing numbers: name those precisely.
        return _number_problem(raw) or Invalid(RejectReason.INVALID_JSON, str(exc)[:300])


def _number_problem(raw: bytes) -> Invalid | None:
    """Classify NaN/Infinity and out-of-range numbers, which orjson either refuses or rounds."""
    found: list[Invalid] = []

    def on_constant(name: str) -> float:
        found.append(Invalid(RejectReason.NON_FINITE_NUMBER, f"{name} is not a JSON number"))
        return 0.0

    def on_float(text: str) -> float:
        value = float(text)
        if math.isinf(value):
            found.append(Invalid(RejectReason.NUMBER_OUT_OF_RANGE, f"{text[:40]} overflows a double"))
        return value

    def on_int(text: str) -> int:
        value = int(text)
        if not -_INT64 <= value < _INT64:
            found.append(Invalid(RejectReason.NUMBER_OUT_OF_RANGE, f"{text[:40]} does not fit in 64 bits"))
        return value

    try:
        json.loads(raw.decode("utf-8"), parse_constant=on_constant, parse_float=on_float, parse_int=on_int)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    non_finite = [item for item in found if item.reason is RejectReason.NON_FINITE_NUMBER]
    ranked = non_finite or found
    return ranked[0] if ranked else None


# --- the fast path ------------------------------------------------------------------------------


def _attributes_ok(attributes: object) -> bool:
    if type(attributes) is not dict or len(attributes) > MAX_ATTRIBUTES:
        return False
    for key, item in attributes.items():
        if key not in _ATTRIBUTE_KEYS_SEEN:
            if type(key) is not str or _ATTRIBUTE_KEY(key) is None:
                return False
            if len(_ATTRIBUTE_KEYS_SEEN) < _ATTRIBUTE_KEYS_CACHED:
                _ATTRIBUTE_KEYS_SEEN.add(key)
        kind = type(item)
        if kind is str:
            if len(item) > 200 or "\x00" in item or (item and (item[0].isspace() or item[-1].isspace())):
                return False  # padded strings are left to the model, which strips them
        elif kind is int:
            if not -_INT64 <= item < _INT64:
                return False
        elif kind is float:
            # orjson reads integers beyond 64 bits as floats: let the model see the exact value.
            if not -_FLOAT_INT_LIMIT < item < _FLOAT_INT_LIMIT:
                return False
        elif kind is not bool:
            return False
    return True


def _amount(raw: object, allowed: int) -> str | None:
    """The amount at the currency's scale, or None when the model must decide."""
    if type(raw) is str:
        match = _PLAIN_DECIMAL(raw)
        # Canonical plain decimals of <= 14 digits compare exactly as doubles.
        if match is None or not 0 < float(raw) <= _MAX_AMOUNT_FLOAT:
            return None
        dot = raw.find(".")
        if dot < 0:
            return raw if allowed == 0 else raw + "." + "0" * allowed
        scale = len(raw) - dot - 1
        return None if scale > allowed else raw + "0" * (allowed - scale)
    if type(raw) is int:
        if not 0 < raw <= _MAX_AMOUNT_INT:
            return None
        return str(Decimal(raw).quantize(_QUANTUM[allowed]))
    if type(raw) is float:
        if not 0 < raw <= _MAX_AMOUNT_FLOAT:  # also false for NaN
            return None
        amount = Decimal(repr(raw))
        exponent = amount.as_tuple().exponent
        if not isinstance(exponent, int) or -exponent > allowed:
            return None
        return str(amount.quantize(_QUANTUM[allowed]))
    return None


def fast_path(obj: dict[str, Any]) -> Valid | None:
    """The contract on the common shape, or None when the model must decide."""
    if not _FAST_KEYS.issuperset(obj):
        return None
    try:
        transaction_id = obj["transaction_id"]
        tenant_id = obj["tenant_id"]
        account_id = obj["account_id"]
        merchant_id = obj["merchant_id"]
        category = obj["merchant_category"]
        channel = obj["channel"]
        stamp = obj["occurred_at"]
        currency = obj["currency"]
        country = obj["country"]
        raw_amount = obj["amount"]
        # One regex over the always-present text fields: `join` refuses anything but strings,
        # and the separator is in none of the patterns, so each field matches its own part.
        common = "\x1f".join((transaction_id, tenant_id, account_id, merchant_id, category, channel, stamp))
    except (KeyError, TypeError):  # a required field absent, or not a string
        return None
    if _COMMON(common) is None:
        return None
    get = obj.get
    version = get("schema_version", 1)
    if type(version) is not int or version != 1:
        return None
    card_id = get("card_id")
    device_id = get("device_id")
    if card_id is not None and not (type(card_id) is str and _ID(card_id)):
        return None
    if device_id is not None and not (type(device_id) is str and _ID(device_id)):
        return None

    if type(currency) is not str or len(currency) != 3 or type(country) is not str or len(country) != 2:
        return None
    if currency not in _CURRENCY_CODES:
        currency = currency.upper()
        if currency not in _CURRENCY_CODES:
            return None
    if country not in _COUNTRY_CODES:
        country = country.upper()
        if country not in _COUNTRY_CODES:
            return None
    amount = _amount(raw_amount, _MINOR_UNITS[currency])
    if amount is None:
        return None

    try:
        occurred_at = datetime.fromisoformat(stamp)
        if occurred_at.tzinfo is UTC and stamp[-1] == "Z":
            # Already UTC: canonical text by slicing, without formatting the datetime again.
            size = len(stamp)
            if size == 20 or occurred_at.microsecond == 0:
                stamp = stamp[:19] + "Z"
            elif size == 24:
                stamp = stamp[:23] + "000Z"
        else:
            occurred_at = occurred_at.astimezone(UTC)
            stamp = utc_text(occurred_at)
    except (ValueError, OverflowError):
        return None

    ip = get("ip")
    if ip is not None:
        if type(ip) is not str:
            return None
        if _IPV4(ip) is None:
            if ":" not in ip:
                return None
            try:
                address = IPv6Address(ip)
            except ValueError:
                return None
            if address.scope_id is not None:
                return None
            ip = str(address)

    lat: Any = get("lat")
    lon: Any = get("lon")
    if lat is not None or lon is not None:
        if not (type(lat) is float or type(lat) is int) or not (type(lon) is float or type(lon) is int):
            return None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):  # also false for NaN
            return None
        lat = float(lat)
        lon = float(lon)

    attributes = get("attributes")
    if attributes is None:
        if "attributes" in obj:
            return None
        attributes = {}
    elif type(attributes) is not dict or (attributes and not _attributes_ok(attributes)):
        return None

    fields = {
        "schema_version": 1,
        "transaction_id": transaction_id,
        "occurred_at": stamp,
        "tenant_id": tenant_id,
        "account_id": account_id,
        "card_id": card_id,
        "merchant_id": merchant_id,
        "merchant_category": category,
        "amount": amount,
        "currency": currency,
        "channel": channel,
        "country": country,
        "device_id": device_id,
        "ip": ip,
        "lat": lat,
        "lon": lon,
        "attributes": attributes,
    }
    return Valid(transaction_id, account_id, occurred_at, fields)


# --- the model path -------------------------------------------------------------------------------


def from_model(model: Transaction) -> Valid | Invalid:
    """The normalised form of a transaction the pydantic contract accepted."""
    try:
        occurred_at = model.occurred_at.astimezone(UTC)
    except OverflowError:
        # Valid by contract but outside what UTC can represent: certainly outside any window.
        reason = RejectReason.OCCURRED_AT_TOO_OLD if model.occurred_at.year < 2 else RejectReason.OCCURRED_AT_IN_FUTURE
        return Invalid(reason, f"occurred_at {model.occurred_at.isoformat()} cannot be expressed in UTC")
    scale = currency_minor_units(model.currency)
    fields = {
        "schema_version": 1,
        "transaction_id": model.transaction_id,
        "occurred_at": utc_text(occurred_at),
        "tenant_id": model.tenant_id,
        "account_id": model.account_id,
        "card_id": model.card_id,
        "merchant_id": model.merchant_id,
        "merchant_category": model.merchant_category,
        "amount": str(model.amount.quantize(_QUANTUM[scale])),
        "currency": model.currency,
        "channel": model.channel.value,
        "country": model.country,
        "device_id": model.device_id,
        "ip": None if model.ip is None else str(model.ip),
        "lat": model.lat,
        "lon": model.lon,
        "attributes": dict(model.attributes),
    }
    return Valid(model.transaction_id, model.account_id, occurred_at, fields)


def _loc(error: ErrorDetails) -> str:
    # Union branches put long validator descriptions in `loc`; keep only the field path.
    parts = [str(part) for part in error["loc"] if isinstance(part, int) or "[" not in str(part)]
    return ".".join(parts) or "transaction"


def reason_for(errors: list[ErrorDetails]) -> RejectReason:
    """One machine-readable reason for a pydantic validation failure."""
    if any(error["loc"][:1] == ("schema_version",) for error in errors):
        return RejectReason.UNSUPPORTED_SCHEMA_VERSION
    error = errors[0]
    kind = error["type"]
    field = str(error["loc"][0]) if error["loc"] else ""
    message = error["msg"]
    if kind == "missing":
        return RejectReason.MISSING_FIELD
    if kind == "extra_forbidden":
        return RejectReason.UNKNOWN_FIELD
    if kind in ("json_invalid", "json_type"):
        return RejectReason.INVALID_JSON
    if not field:
        if kind in ("model_type", "model_attributes_type", "dict_type"):
            return RejectReason.NOT_AN_OBJECT
        if "decimals" in message:
            return RejectReason.AMOUNT_PRECISION
        return RejectReason.INVALID_VALUE
    if "finite" in message:
        return RejectReason.NON_FINITE_NUMBER
    if field == "amount":
        if kind in ("greater_than", "less_than_equal"):
            return RejectReason.AMOUNT_OUT_OF_RANGE
        return RejectReason.WRONG_TYPE
    if field in ("occurred_at", "ingested_at"):
        return RejectReason.INVALID_TIMESTAMP
    if field == "currency" and not kind.endswith("_type"):
        return RejectReason.UNKNOWN_CURRENCY
    if field == "country" and not kind.endswith("_type"):
        return RejectReason.UNKNOWN_COUNTRY
    if field == "attributes" and kind == "too_long":
        return RejectReason.TOO_MANY_ATTRIBUTES
    if "64-bit" in message:
        return RejectReason.NUMBER_OUT_OF_RANGE
    if kind.endswith("_type") or kind == "union_tag_invalid":
        return RejectReason.WRONG_TYPE
    return RejectReason.INVALID_VALUE


def describe(errors: list[ErrorDetails]) -> str:
    """A short human-readable summary of validation errors (DLQ detail header)."""
    text = "; ".join(f"{_loc(error)}: {error['msg']}" for error in errors[:5])
    if len(errors) > 5:
        text += f"; and {len(errors) - 5} more"
    return text[:1000]


def parse_transaction(raw: bytes | None, *, max_bytes: int) -> Valid | Invalid:
    """Decode and validate one raw message against the contract (no time-window policy)."""
    value = decode(raw, max_bytes=max_bytes)
    if type(value) is Invalid:
        return value
    if type(value) is not dict:
        return Invalid(RejectReason.NOT_AN_OBJECT, f"expected a JSON object, got {type(value).__name__}")
    fast = fast_path(value)
    if fast is not None:
        return fast
    try:
        model = Transaction.model_validate_json(raw)  # type: ignore[arg-type]  # decode() refused None
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        return Invalid(reason_for(errors), describe(errors))
    return from_model(model)


def encode_valid(valid: Valid, *, ingested_at: str) -> bytes:
    """The `tx.valid` value: the contract's JSON with `ingested_at` (as `utc_text`) set."""
    # The same bytes as dumping `{**valid.fields, "ingested_at": ingested_at}`, without copying the dict.
    return orjson.dumps(valid.fields)[:-1] + b',"ingested_at":' + orjson.dumps(ingested_at) + b"}"
