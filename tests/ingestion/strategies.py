"""Hypothesis strategies for raw transactions: contract-valid ones, near misses and arbitrary JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from core.contracts import MAX_ATTRIBUTES, Channel, currency_minor_units

IDS = st.from_regex(r"[A-Za-z0-9._:@-]{1,64}", fullmatch=True)
CURRENCIES = ["EUR", "USD", "JPY", "KWD", "GBP", "CLF", "BHD", "CHF", "usd", "Eur"]
COUNTRIES = ["DE", "US", "JP", "KW", "GB", "gb", "Fr", "BR", "NG"]
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


@st.composite
def amounts(draw: st.DrawFn, currency: str) -> object:
    """An in-range amount at or below the currency's scale, as JSON string, int or float."""
    scale = currency_minor_units(currency.upper())
    units = draw(st.integers(min_value=1, max_value=10**9 * 10**scale))
    amount = Decimal(units).scaleb(-scale)
    form = draw(st.sampled_from(["str", "str", "plain", "int", "float"]))
    if form == "str":
        return str(amount)
    if form == "plain":
        return format(amount, "f")
    if form == "int" and amount == amount.to_integral_value():
        return int(amount)
    as_float = float(amount)
    # A float is valid only when its shortest repr keeps the currency's scale ("1.0" JPY is not).
    exponent = Decimal(repr(as_float)).as_tuple().exponent
    if form == "float" and isinstance(exponent, int) and -exponent <= scale:
        return as_float
    return str(amount)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    moment = draw(
        st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=OFFSETS | st.just(UTC))
    )
    text = moment.isoformat(timespec=draw(st.sampled_from(["seconds", "milliseconds", "microseconds", "auto"])))
    if draw(st.booleans()) and text.endswith("+00:00"):
        text = text[:-6] + "Z"
    return text


ATTRIBUTE_VALUES = (
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=200)
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
)


@st.composite
def valid_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """A dict the contract accepts (the strategies above draw only legal values)."""
    currency = draw(st.sampled_from(CURRENCIES))
    payload: dict[str, Any] = {
        "transaction_id": draw(IDS),
        "occurred_at": draw(timestamps()),
        "tenant_id": draw(IDS),
        "account_id": draw(IDS),
        "merchant_id": draw(IDS),
        "merchant_category": draw(st.from_regex(r"[0-9]{4}", fullmatch=True)),
        "amount": draw(amounts(currency)),
        "currency": currency,
        "channel": draw(st.sampled_from(list(Channel))).value,
        "country": draw(st.sampled_from(COUNTRIES)),
    }
    optional: dict[str, Any] = {
        "schema_version": st.just(1),
        "card_id": st.none() | IDS,
        "device_id": st.none() | IDS,
        "ip": st.none() | st.ip_addresses().map(str),
        "attributes": st.dictionaries(
            st.from_regex(r"[a-z][a-z0-9_]{0,39}", fullmatch=True), ATTRIBUTE_VALUES, max_size=MAX_ATTRIBUTES
        ),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            payload[name] = draw(strategy)
    if draw(st.booleans()):
        payload["lat"] = draw(st.floats(min_value=-90, max_value=90) | st.integers(min_value=-90, max_value=90))
        payload["lon"] = draw(st.floats(min_value=-180, max_value=180) | st.integers(min_value=-180, max_value=180))
    return payload


@st.composite
def near_misses(draw: st.DrawFn) -> dict[str, Any]:
    """A valid payload with one field replaced, removed or added: mostly invalid, sometimes not."""
    payload = draw(valid_payloads())
    action = draw(st.sampled_from(["replace", "replace", "remove", "add", "pad"]))
    names = sorted(payload)
    if action == "remove":
        payload.pop(draw(st.sampled_from(names)))
    elif action == "add":
        payload[draw(st.text(max_size=15))] = draw(JSON_VALUES)
    elif action == "pad":
        name = draw(st.sampled_from([n for n in names if isinstance(payload[n], str)]))
        payload[name] = draw(st.sampled_from([" ", "\t", "\n", "\u00a0", "\u2003", "\x1f"])) + payload[name]
    else:
        name = draw(st.sampled_from([*names, "attributes", "lat", "ip", "schema_version"]))
        payload[name] = draw(
            JSON_VALUES
            | st.sampled_from(["", "x", "1e3", "-1", "0", "NaN", "1000000000.01", "12.345", "٥٤١١", "fe80::1%eth0"])
            | st.sampled_from([0, -1, 1.5, 10**9 + 1, 2**63, -(2**63) - 1, 1e19, True, False, {}, []])
            | st.dictionaries(st.text(max_size=8), JSON_SCALARS, max_size=20)
        )
    return payload
