from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from core.contracts import (
    Anomaly,
    Channel,
    DetectorFamily,
    EntityType,
    FeatureVector,
    Reason,
    Severity,
    Transaction,
    anomaly_id_for,
    currency_minor_units,
    in_currency_units,
)

IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,30}", fullmatch=True)


def valid_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "transaction_id": "tx-1",
        "occurred_at": "2026-11-23T10:00:00+00:00",
        "tenant_id": "acme",
        "account_id": "acc-1",
        "merchant_id": "m-1",
        "merchant_category": "5411",
        "amount": "12.50",
        "currency": "EUR",
        "channel": "ecommerce",
        "country": "DE",
    }
    payload.update(overrides)
    return payload


@st.composite
def transactions(draw: st.DrawFn) -> dict[str, Any]:
    currency = draw(st.sampled_from(["EUR", "USD", "JPY", "KWD", "GBP"]))
    scale = currency_minor_units(currency)
    cents = draw(st.integers(min_value=1, max_value=10**9 * 10**scale))
    amount = Decimal(cents).scaleb(-scale)
    lat = draw(st.none() | st.floats(min_value=-90, max_value=90))
    return valid_payload(
        transaction_id=draw(IDS),
        account_id=draw(IDS),
        merchant_id=draw(IDS),
        amount=str(amount),
        currency=currency,
        channel=draw(st.sampled_from(list(Channel))).value,
        country=draw(st.sampled_from(["DE", "US", "JP", "KW", "gb"])),
        occurred_at=draw(
            st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
        ).isoformat(),
        lat=lat,
        lon=None if lat is None else draw(st.floats(min_value=-180, max_value=180)),
        attributes=draw(
            st.dictionaries(
                st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
                st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=20)
                | st.integers(min_value=-(2**63), max_value=2**63 - 1)
                | st.booleans(),
                max_size=5,
            )
        ),
    )


@given(transactions())
@settings(max_examples=200)
def test_every_valid_transaction_round_trips_through_json(payload: dict[str, Any]) -> None:
    parsed = Transaction.model_validate(payload)
    again = Transaction.model_validate_json(parsed.model_dump_json())
    assert again == parsed
    assert again.amount == Decimal(payload["amount"])
    assert again.country == payload["country"].upper()


@given(st.dictionaries(st.text(max_size=10), st.none() | st.integers() | st.text(max_size=10), max_size=8))
def test_arbitrary_objects_are_rejected_with_validation_errors_only(payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Transaction.model_validate(payload)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("occurred_at", "2026-11-23T10:00:00", "timezone"),
        ("amount", "0", "greater than 0"),
        ("amount", "-5", "greater than 0"),
        ("amount", "1e12", "less than or equal"),
        ("amount", "NaN", "finite"),
        ("amount", "Infinity", "finite"),
        ("amount", True, "boolean"),
        ("amount", "12.345", "allows 2"),
        ("currency", "XXZ", "ISO 4217"),
        ("country", "ZZ", "ISO 3166"),
        ("merchant_category", "54", "pattern"),
        ("channel", "carrier_pigeon", "channel"),
        ("transaction_id", "has space", "pattern"),
        ("lat", 10.0, "together"),
        ("surprise", "field", "Extra inputs"),
    ],
)
def test_invalid_fields_are_named(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Transaction.model_validate(valid_payload(**{field: value}))
    assert message in str(caught.value)


def test_currency_scale_follows_iso_4217() -> None:
    assert Transaction.model_validate(valid_payload(amount="1500", currency="JPY")).amount == 1500
    with pytest.raises(ValidationError):
        Transaction.model_validate(valid_payload(amount="15.5", currency="JPY"))
    assert Transaction.model_validate(valid_payload(amount="1.125", currency="KWD")).amount == Decimal("1.125")


def test_stored_amounts_read_back_with_the_currencys_decimals_and_pass_the_contract_again() -> None:
    # The database keeps four decimals for every currency (numeric(18, 4)).
    for stored, currency, shown in [("42.5000", "EUR", "42.50"), ("7.0000", "JPY", "7"), ("1.1250", "KWD", "1.125")]:
        assert str(in_currency_units(Decimal(stored), currency)) == shown
        Transaction.model_validate(valid_payload(amount=shown, currency=currency))
        with pytest.raises(ValidationError, match="decimals"):  # why the stored form must not go back out
            Transaction.model_validate(valid_payload(amount=stored, currency=currency))
    assert str(in_currency_units(Decimal("1.2345"), "EUR")) == "1.2345"  # never rounded


def test_anomaly_ids_are_deterministic_per_natural_key() -> None:
    one = anomaly_id_for(tenant_id="acme", transaction_id="t", detector_name="zscore", detector_version="1")
    assert one == anomaly_id_for(tenant_id="acme", transaction_id="t", detector_name="zscore", detector_version="1")
    assert one != anomaly_id_for(tenant_id="acme", transaction_id="t", detector_name="zscore", detector_version="2")
    assert one != anomaly_id_for(tenant_id="globex", transaction_id="t", detector_name="zscore", detector_version="1")


def test_anomaly_requires_a_reason_and_a_bounded_score() -> None:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "tenant_id": "acme",
        "transaction_id": "t",
        "entity_type": EntityType.ACCOUNT,
        "entity_id": "a",
        "event_time": now - timedelta(seconds=1),
        "detector_family": DetectorFamily.STATISTICAL,
        "detector_name": "amount_zscore",
        "detector_version": "1",
        "score_raw": 4.2,
        "score": 88.0,
        "severity": Severity.CRITICAL,
        "reasons": [Reason(feature="amount", value=900.0, baseline=40.0, text="Amount is 4.2σ above usual.")],
    }
    anomaly = Anomaly.build(detected_at=now, **fields)
    assert Anomaly.model_validate_json(anomaly.model_dump_json()) == anomaly
    with pytest.raises(ValidationError):
        Anomaly.build(detected_at=now, **{**fields, "reasons": []})
    with pytest.raises(ValidationError):
        Anomaly.build(detected_at=now, **{**fields, "score": 101.0})


def test_feature_vector_embeds_a_valid_transaction() -> None:
    vector = FeatureVector(
        transaction=Transaction.model_validate(valid_payload()),
        features={"account_count_1h": 3.0, "account_amount_history_std": None},
        feature_set_version=1,
    )
    assert FeatureVector.model_validate_json(vector.model_dump_json()) == vector
