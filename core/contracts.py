"""Versioned event contracts: `Transaction`, `FeatureVector`, `Anomaly`.

These are the only shapes that travel between services (Kafka values and API
bodies). Bump `SCHEMA_VERSION` on any breaking change; consumers dead-letter
versions they do not understand instead of guessing.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Any, Final, Literal

import pycountry
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

SCHEMA_VERSION: Final = 1
MAX_AMOUNT: Final = Decimal("1000000000")  # one billion in major units: larger is a data error
MAX_ATTRIBUTES: Final = 16
_INT64: Final = 2**63

# ISO 4217 minor units that differ from the usual 2 (scale of the amount's fraction).
_ZERO_DECIMALS: Final = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DECIMALS: Final = "BHD IQD JOD KWD LYD OMR TND"
_MINOR_UNITS: Final[dict[str, int]] = {
    **dict.fromkeys(_ZERO_DECIMALS.split(), 0),
    **dict.fromkeys(_THREE_DECIMALS.split(), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
_CURRENCIES: Final[frozenset[str]] = frozenset(c.alpha_3 for c in pycountry.currencies)
_COUNTRIES: Final[frozenset[str]] = frozenset(c.alpha_2 for c in pycountry.countries)

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:@-]+$")]
AttributeKey = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]
AttributeValue = Annotated[str, StringConstraints(max_length=200)] | bool | int | float


def currency_minor_units(currency: str) -> int:
    """Digits after the decimal point allowed for `currency` (ISO 4217)."""
    return _MINOR_UNITS.get(currency, 2)


def in_currency_units(amount: Decimal, currency: str) -> Decimal:
    """`amount` written with the currency's decimals (42.5000 EUR -> 42.50, 7.0000 JPY -> 7).

    The database keeps four decimals for every currency; a transaction read back must carry the
    decimals it was sent with, or the same payment sent again fails the contract's decimals check.
    An amount that has more decimals than the currency allows is returned unchanged, never rounded.
    """
    shown = amount.quantize(Decimal(1).scaleb(-currency_minor_units(currency)))
    return shown if shown == amount else amount


class Channel(StrEnum):
    CARD_PRESENT = "card_present"
    ECOMMERCE = "ecommerce"
    TRANSFER = "transfer"
    ATM = "atm"
    WALLET = "wallet"


class Transaction(BaseModel):
    """A payment as producers send it (JSON Schema: `vigil schema transaction`).

    `ingested_at` is set by ingestion, never by producers.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    transaction_id: Identifier = Field(
        description="The sender's id for the payment, unique per tenant: another tenant may use the same id."
    )
    occurred_at: AwareDatetime = Field(description="When the payment happened; must carry a UTC offset.")
    tenant_id: Identifier
    account_id: Identifier
    card_id: Identifier | None = None
    merchant_id: Identifier
    # [0-9], not \d: the pattern engine's \d also matches non-ASCII digits such as "٥٤١١".
    merchant_category: Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")] = Field(
        description="ISO 18245 merchant category code (4 digits)."
    )
    amount: Decimal = Field(gt=0, le=MAX_AMOUNT, description="Major units, scale per currency.")
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)] = Field(
        description="ISO 4217 code, upper case."
    )
    channel: Channel
    country: Annotated[str, StringConstraints(min_length=2, max_length=2)] = Field(
        description="ISO 3166-1 alpha-2 code, upper case."
    )
    device_id: Identifier | None = None
    ip: IPv4Address | IPv6Address | None = None
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    attributes: dict[AttributeKey, AttributeValue] = Field(
        default_factory=dict, max_length=MAX_ATTRIBUTES, description="Small free-form map."
    )
    ingested_at: AwareDatetime | None = None

    @field_validator("amount", mode="before")
    @classmethod
    def _amount_is_exact(cls, value: Any) -> Any:
        # Floats lose cents silently; accept them only when they are finite, and parse via str.
        if isinstance(value, bool):
            raise ValueError("amount must be a number, not a boolean")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError("amount must be finite")
            return Decimal(repr(value))
        if isinstance(value, str | int | Decimal):
            try:
                parsed = Decimal(value)
            except ArithmeticError:
                raise ValueError("amount must be a decimal number") from None
            if not parsed.is_finite():
                raise ValueError("amount must be finite")
            return parsed
        return value

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        value = value.upper()
        if value not in _CURRENCIES:
            raise ValueError(f"{value!r} is not an ISO 4217 currency code")
        return value

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        value = value.upper()
        if value not in _COUNTRIES:
            raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
        return value

    @field_validator("lat", "lon", mode="before")
    @classmethod
    def _finite_coordinate(cls, value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("coordinate must be finite")
        return value

    @field_validator("ip")
    @classmethod
    def _unscoped_ip(cls, value: IPv4Address | IPv6Address | None) -> IPv4Address | IPv6Address | None:
        # A zone id ("fe80::1%eth0") is unbounded text and means nothing outside the sender's host.
        if isinstance(value, IPv6Address) and value.scope_id is not None:
            raise ValueError("ip must not carry an IPv6 zone (scope) id")
        return value

    @field_validator("attributes")
    @classmethod
    def _finite_attributes(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"attribute {key!r} must be finite")
            # Bounded so every JSON reader (and PostgreSQL jsonb, which rejects NUL) keeps it exactly.
            if isinstance(item, int) and not isinstance(item, bool) and not -_INT64 <= item < _INT64:
                raise ValueError(f"attribute {key!r} must fit in a signed 64-bit integer")
            if isinstance(item, str) and "\x00" in item:
                raise ValueError(f"attribute {key!r} must not contain NUL characters")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Transaction:
        exponent = self.amount.as_tuple().exponent
        scale = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        allowed = currency_minor_units(self.currency)
        if scale > allowed:
            raise ValueError(f"amount {self.amount} has {scale} decimals but {self.currency} allows {allowed}")
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon must be given together")
        return self


# What a producer sends, in the contract's order: the columns of files, of `transactions` and of the
# JSON on `tx.valid` (which adds `schema_version`); ingestion adds `ingested_at` itself.
TRANSACTION_FIELDS: Final = tuple(
    name for name in Transaction.model_fields if name not in ("schema_version", "ingested_at")
)


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class DetectorFamily(StrEnum):
    STATISTICAL = "statistical"
    ML = "ml"
    RULES = "rules"
    AGGREGATE = "aggregate"


class EntityType(StrEnum):
    ACCOUNT = "account"
    CARD = "card"
    MERCHANT = "merchant"
    DEVICE = "device"
    IP = "ip"


class AnomalyStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


def _feature_names_v2() -> tuple[str, ...]:
    windows = ("1h", "24h", "7d", "30d")
    stats = ("count", "amount_sum", "amount_mean", "amount_std", "amount_max")
    history = ("seconds_since_last", "amount_history_count", "amount_history_mean", "amount_history_std")
    per_entity = [f"{stat}_{window}" for window in windows for stat in stats] + [*history, "amount_zscore"]
    entities = ("account", "card", "merchant", "device", "ip")
    return (
        "amount",
        "hour_of_day",
        *(f"{entity}_{name}" for entity in entities for name in per_entity),
        "account_new_merchant",
        "account_new_country",
        "account_new_device",
        "account_distinct_merchants_24h",
        "account_distinct_countries_24h",
        "device_distinct_accounts_24h",
        "ip_distinct_accounts_24h",
        "account_geo_velocity_kmh",
        "account_hour_typicality",
        "account_amount_history_median",
        "account_amount_history_mad",
        "account_amount_robust_zscore",
        "account_amount_history_q1",
        "account_amount_history_q3",
    )


# The feature names of each feature set version, in the order of a compact vector's `feature_values`
# (the features stage's registry order). Part of the contract: a version's list never changes; the
# features stage's tests fail when its registry disagrees with the list of its version.
FEATURE_NAMES_BY_VERSION: Final[dict[int, tuple[str, ...]]] = {2: _feature_names_v2()}


class FeatureVector(BaseModel):
    """A valid transaction plus the features computed for it (topic `tx.features`).

    Two wire forms, one model: named (`"features": {"amount": 12.5, ...}`) or compact
    (`"feature_values": [12.5, ...]`, the values in the order `FEATURE_NAMES_BY_VERSION`
    lists for `feature_set_version`). The features stage writes the compact form (names were
    ~66% of each message); either way the decoded model exposes `.features` by name, and it
    always serialises in the named form.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    transaction: Transaction
    features: dict[str, float | None] = Field(
        default_factory=dict, description="Feature name (see the feature registry) to value; None when undefined."
    )
    feature_values: list[float | None] | None = Field(
        None,
        exclude=True,
        description="Compact form of `features` (instead of it): values in the version's registry order.",
    )
    feature_set_version: int = Field(ge=1, description="Version of the feature registry that made them.")
    late: bool = Field(False, description="Arrived after the allowed lateness; features are best effort.")

    @model_validator(mode="after")
    def _named_features(self) -> FeatureVector:
        # After validation, not before: a "before" hook would make pydantic turn the whole JSON
        # into Python objects first, which made decoding 15-70% slower.
        values = self.feature_values
        if values is None:
            if "features" not in self.model_fields_set:
                raise ValueError("either features or feature_values is required")
            return self
        if "features" in self.model_fields_set:
            raise ValueError("features and feature_values are alternatives, not both")
        names = FEATURE_NAMES_BY_VERSION.get(self.feature_set_version)
        if names is None:
            raise ValueError(f"feature_values of unknown feature_set_version {self.feature_set_version}")
        if len(values) != len(names):
            raise ValueError(
                f"feature_set_version {self.feature_set_version} has {len(names)} features, not {len(values)}"
            )
        # The model is frozen for its users; completing it here is part of constructing it.
        object.__setattr__(self, "features", dict(zip(names, values, strict=True)))
        object.__setattr__(self, "feature_values", None)
        return self


class Reason(BaseModel):
    """Why a detector fired, in a form both a model and a person can read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature: str
    value: float | str | None = None
    baseline: float | str | None = None
    contribution: float | None = Field(None, description="Share of the score this reason explains.")
    text: str = Field(description="One sentence an analyst can read.")


_ANOMALY_NAMESPACE: Final = uuid.UUID("6f1d3c2e-6a43-4f5b-9a55-1c0b7a0de1a1")


def _anomaly_key(tenant_id: str, transaction_id: str, detector_name: str, detector_version: str) -> str:
    # Transaction ids are unique per tenant only (ADR 0013): two tenants' `tx-1` are two anomalies.
    return f"{tenant_id}\x1f{transaction_id}\x1f{detector_name}\x1f{detector_version}"


def anomaly_id_for(*, tenant_id: str, transaction_id: str, detector_name: str, detector_version: str) -> uuid.UUID:
    """Deterministic id of an anomaly, so replays and retries produce the same row."""
    return uuid.uuid5(_ANOMALY_NAMESPACE, _anomaly_key(tenant_id, transaction_id, detector_name, detector_version))


def anomaly_ids(
    *, tenant_ids: Sequence[str], transaction_ids: Sequence[str], detector_name: str, detector_version: str
) -> list[uuid.UUID]:
    """`anomaly_id_for` of many transactions of one detector, in bulk (tenant and transaction pairwise)."""
    suffix = _anomaly_key("", "", detector_name, detector_version)[1:].encode()  # "\x1f{name}\x1f{version}"
    names = [
        f"{tenant}\x1f{transaction}".encode() + suffix
        for tenant, transaction in zip(tenant_ids, transaction_ids, strict=True)
    ]
    return uuid5_many(_ANOMALY_NAMESPACE, names)


def uuid5_many(namespace: uuid.UUID, names: Iterable[bytes]) -> list[uuid.UUID]:
    """`uuid.uuid5(namespace, name)` of many names, ~3x faster than calling it for each.

    uuid5 = SHA-1 of namespace + name with the version and variant bits set; the UUID is
    built the way the uuid module builds its own (slots set directly), skipping the
    argument checks of `UUID.__init__` that cost most of the ~2 us per id.
    """
    prefix = namespace.bytes
    new, set_slot, unknown, sha1 = object.__new__, object.__setattr__, uuid.SafeUUID.unknown, hashlib.sha1
    ids = []
    for name in names:
        value = (int.from_bytes(sha1(prefix + name, usedforsecurity=False).digest()[:16]) & _UUID5_CLEAR) | _UUID5_SET
        built = new(uuid.UUID)
        set_slot(built, "int", value)
        set_slot(built, "is_safe", unknown)
        ids.append(built)
    return ids


_UUID5_CLEAR: Final = ~((0xC000 << 48) | (0xF000 << 64))  # RFC 4122 variant and version bits
_UUID5_SET: Final = (0x8000 << 48) | (5 << 76)


class Anomaly(BaseModel):
    """One detector's verdict on one transaction (or aggregate window): table and topic `anomalies`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    anomaly_id: uuid.UUID
    tenant_id: Identifier
    transaction_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    entity_type: EntityType
    entity_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    event_time: AwareDatetime
    detected_at: AwareDatetime
    detector_family: DetectorFamily
    detector_name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    detector_version: Annotated[str, StringConstraints(min_length=1, max_length=50)]
    score_raw: float
    score: float = Field(ge=0, le=100, description="Normalised 0-100; higher is more anomalous.")
    severity: Severity
    reasons: list[Reason] = Field(min_length=1)
    features: dict[str, float | None] = Field(
        default_factory=dict,
        description="Feature snapshot; empty on the `anomalies` topic (GET /v1/anomalies/{id} has it).",
    )
    amount: Decimal | None = None
    currency: str | None = None
    status: AnomalyStatus = AnomalyStatus.OPEN

    @field_validator("score_raw")
    @classmethod
    def _finite_score(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("score_raw must be finite")
        return value

    @classmethod
    def build(cls, *, detected_at: datetime, **fields: Any) -> Anomaly:
        """Make an anomaly whose id is derived from its natural key."""
        anomaly_id = anomaly_id_for(
            tenant_id=fields["tenant_id"],
            transaction_id=fields["transaction_id"],
            detector_name=fields["detector_name"],
            detector_version=fields["detector_version"],
        )
        return cls(anomaly_id=anomaly_id, detected_at=detected_at, **fields)
