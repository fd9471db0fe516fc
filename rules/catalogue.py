"""The fields a rule may reference: transaction fields (fixed) plus feature fields (injected).

The feature package owns the feature registry; rules only need each feature's
name and type, so the catalogue takes them as a plain mapping. The default
mapping below is kept in step with docs/features.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from core.contracts import FEATURE_NAMES_BY_VERSION
from rules.errors import CatalogueError


class ValueType(StrEnum):
    """The three value types of the language."""

    NUMBER = "number"
    STRING = "string"
    BOOL = "bool"


class FieldSource(StrEnum):
    TRANSACTION = "transaction"
    FEATURE = "feature"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One referenceable field: its type, where it comes from and whether it can be missing."""

    name: str
    type: ValueType
    source: FieldSource
    nullable: bool
    description: str = ""


def _tx(name: str, type_: ValueType, description: str, *, nullable: bool = False) -> FieldSpec:
    return FieldSpec(name, type_, FieldSource.TRANSACTION, nullable, description)


N, S = ValueType.NUMBER, ValueType.STRING

TRANSACTION_FIELDS: Final[tuple[FieldSpec, ...]] = (
    _tx("amount", N, "Amount in major units of `currency` (e.g. 12.50)."),
    _tx("currency", S, "ISO 4217 code, upper case (e.g. EUR)."),
    _tx("channel", S, "card_present, ecommerce, transfer, atm or wallet."),
    _tx("country", S, "ISO 3166-1 alpha-2 code of where the payment happened, upper case."),
    _tx("merchant_category", S, "ISO 18245 merchant category code, 4 digits as text (e.g. '5967')."),
    _tx("merchant_id", S, "Merchant (or transfer beneficiary) id."),
    _tx("account_id", S, "Paying account id."),
    _tx("tenant_id", S, "Tenant the transaction belongs to."),
    _tx("card_id", S, "Card id; missing for non-card payments.", nullable=True),
    _tx("device_id", S, "Device id; missing when the producer does not know it.", nullable=True),
    _tx("ip", S, "Client IP address as text; missing when unknown.", nullable=True),
    _tx("lat", N, "Latitude of the payment; missing when unknown.", nullable=True),
    _tx("lon", N, "Longitude of the payment; missing when unknown.", nullable=True),
    _tx("hour", N, "Hour of day of occurred_at in UTC, 0-23."),
    _tx("weekday", N, "Day of week of occurred_at in UTC, 0 = Monday ... 6 = Sunday."),
)

_FLAGS: Final = frozenset(("account_new_merchant", "account_new_country", "account_new_device"))


def _default_features() -> dict[str, ValueType]:
    # The newest feature set of the contract (core.contracts, checked against features/registry.py
    # by the features stage's tests): the first-seen flags are booleans, every other feature a number.
    names = FEATURE_NAMES_BY_VERSION[max(FEATURE_NAMES_BY_VERSION)]
    return {name: ValueType.BOOL if name in _FLAGS else N for name in names}


DEFAULT_FEATURES: Final[Mapping[str, ValueType]] = _default_features()


class Catalogue:
    """Every field a rule may use, by name. Transaction fields are always present."""

    def __init__(self, features: Mapping[str, ValueType | str] | None = None) -> None:
        fields = {spec.name: spec for spec in TRANSACTION_FIELDS}
        for name, type_ in (DEFAULT_FEATURES if features is None else features).items():
            if not name.isidentifier() or not name.islower():
                raise CatalogueError(f"feature name {name!r} must be a lower-case identifier")
            try:
                value_type = ValueType(type_)
            except ValueError:
                raise CatalogueError(f"feature {name!r} has type {type_!r}; expected number, bool or string") from None
            existing = fields.get(name)
            if existing is not None and existing.source is FieldSource.TRANSACTION:
                # The registry repeats some transaction fields (amount): same value, the field wins.
                if existing.type is not value_type:
                    raise CatalogueError(f"feature {name!r} clashes with the {existing.type} transaction field")
                continue
            # Features are computed per entity history, so any of them can be undefined.
            fields[name] = FieldSpec(name, value_type, FieldSource.FEATURE, nullable=True)
        self._fields = fields

    def get(self, name: str) -> FieldSpec | None:
        return self._fields.get(name)

    def names(self) -> list[str]:
        return sorted(self._fields)

    def __contains__(self, name: object) -> bool:
        return name in self._fields

    def __iter__(self) -> Iterator[FieldSpec]:
        return iter(self._fields.values())

    def __len__(self) -> int:
        return len(self._fields)

    @classmethod
    def of(cls, features: Iterable[tuple[str, ValueType | str]]) -> Catalogue:
        return cls(dict(features))


def default_catalogue() -> Catalogue:
    """Transaction fields plus the default feature names (kept in step with docs/features.md)."""
    return Catalogue(DEFAULT_FEATURES)
