"""The feature registry: every feature's name, unit, entity and one-line description.

The API and dashboard show this table; detectors read features by these names.
Bump `FEATURE_SET_VERSION` whenever a name, a unit or a definition changes.
The column order here is the order of the engine's output matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

FEATURE_SET_VERSION: Final = 2  # 2: account_amount_history_q1/q3

ENTITY_KINDS: Final[tuple[str, ...]] = ("account", "card", "merchant", "device", "ip")

# (suffix, window length in seconds, bucket width in seconds, bucket count): the window
# covers the current bucket and the previous count-1, so it always includes the last
# (window - bucket) and never anything older than the window. Twelve buckets per window keep
# the precision at 1/12 of the window and the state at ~1.5 KB per entity (see docs/features.md).
WINDOWS: Final[tuple[tuple[str, int, int, int], ...]] = (
    ("1h", 3_600, 300, 12),
    ("24h", 86_400, 2 * 3_600, 12),
    ("7d", 7 * 86_400, 14 * 3_600, 12),
    ("30d", 30 * 86_400, 60 * 3_600, 12),
)
DISTINCT_BUCKET_SECONDS: Final = 3_600
DISTINCT_BUCKETS: Final = 24
RECENT_AMOUNTS: Final = 32  # robust statistics use the last 32 amounts of the account
GEO_MIN_HOURS: Final = 1 / 60  # velocity divides by at least one minute (no division by ~0)


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One feature as the API and dashboard describe it."""

    name: str
    unit: str
    description: str
    entity: str


def _window_specs(kind: str) -> list[FeatureSpec]:
    specs = []
    for suffix, _, bucket, _count in WINDOWS:
        precision = f"bucketed at {bucket // 60} min" if bucket < 3_600 else f"bucketed at {bucket // 3_600} h"
        span = f"{suffix} ({precision}, includes this transaction)"
        specs += [
            FeatureSpec(f"{kind}_count_{suffix}", "transactions", f"Transactions of this {kind} in {span}.", kind),
            FeatureSpec(f"{kind}_amount_sum_{suffix}", "currency", f"Sum of amounts of this {kind} in {span}.", kind),
            FeatureSpec(f"{kind}_amount_mean_{suffix}", "currency", f"Mean amount of this {kind} in {span}.", kind),
            FeatureSpec(
                f"{kind}_amount_std_{suffix}",
                "currency",
                f"Population standard deviation of amounts of this {kind} in {span}.",
                kind,
            ),
            FeatureSpec(f"{kind}_amount_max_{suffix}", "currency", f"Largest amount of this {kind} in {span}.", kind),
        ]
    return specs


def _entity_specs(kind: str) -> list[FeatureSpec]:
    return [
        *_window_specs(kind),
        FeatureSpec(
            f"{kind}_seconds_since_last",
            "seconds",
            f"Time since this {kind}'s previous transaction; None for its first.",
            kind,
        ),
        FeatureSpec(
            f"{kind}_amount_history_count",
            "transactions",
            f"Transactions of this {kind} before this one (all history).",
            kind,
        ),
        FeatureSpec(
            f"{kind}_amount_history_mean",
            "currency",
            f"Mean amount of this {kind} before this transaction; None without history.",
            kind,
        ),
        FeatureSpec(
            f"{kind}_amount_history_std",
            "currency",
            f"Sample standard deviation of this {kind}'s past amounts; None with fewer than 2.",
            kind,
        ),
        FeatureSpec(
            f"{kind}_amount_zscore",
            "sigma",
            f"(amount - history mean) / history std of this {kind}; None when the std is undefined or 0.",
            kind,
        ),
    ]


# Order matters: the kernels write columns in exactly this order (see features.engine).
_SPECS: list[FeatureSpec] = [
    FeatureSpec("amount", "currency", "Amount of this transaction in major units of its currency.", "transaction"),
    FeatureSpec("hour_of_day", "hour", "UTC hour of day (0-23) when the payment happened.", "transaction"),
]
for _kind in ENTITY_KINDS:
    _SPECS += _entity_specs(_kind)
_SPECS += [
    FeatureSpec("account_new_merchant", "flag", "1 when this account never paid this merchant before.", "account"),
    FeatureSpec("account_new_country", "flag", "1 when this account never paid in this country before.", "account"),
    FeatureSpec(
        "account_new_device",
        "flag",
        "1 when this account never used this device before; None without a device.",
        "account",
    ),
    FeatureSpec(
        "account_distinct_merchants_24h",
        "merchants",
        "Distinct merchants this account paid in 24h (bucketed at 1 h, includes this one).",
        "account",
    ),
    FeatureSpec(
        "account_distinct_countries_24h",
        "countries",
        "Distinct countries this account paid in within 24h (bucketed at 1 h, includes this one).",
        "account",
    ),
    FeatureSpec(
        "device_distinct_accounts_24h",
        "accounts",
        "Distinct accounts seen on this device in 24h (bucketed at 1 h): mule and account-farming signal.",
        "device",
    ),
    FeatureSpec(
        "ip_distinct_accounts_24h",
        "accounts",
        "Distinct accounts seen from this IP in 24h (bucketed at 1 h): mule and account-farming signal.",
        "ip",
    ),
    FeatureSpec(
        "account_geo_velocity_kmh",
        "km/h",
        "Great-circle speed from the account's previous located payment (time floored at 1 min).",
        "account",
    ),
    FeatureSpec(
        "account_hour_typicality",
        "share",
        "Share of the account's past payments within +-1 h (UTC hour of day) of this one.",
        "account",
    ),
    FeatureSpec(
        "account_amount_history_median",
        "currency",
        f"Median of the account's last {RECENT_AMOUNTS} amounts before this one (exact).",
        "account",
    ),
    FeatureSpec(
        "account_amount_history_mad",
        "currency",
        f"Median absolute deviation of the account's last {RECENT_AMOUNTS} amounts (exact).",
        "account",
    ),
    FeatureSpec(
        "account_amount_robust_zscore",
        "sigma",
        "(amount - recent median) / (1.4826 * MAD); None when MAD is 0 or there is no history.",
        "account",
    ),
    FeatureSpec(
        "account_amount_history_q1",
        "currency",
        f"Lower quartile of the account's last {RECENT_AMOUNTS} amounts before this one (exact, linear interpolation).",
        "account",
    ),
    FeatureSpec(
        "account_amount_history_q3",
        "currency",
        f"Upper quartile of the account's last {RECENT_AMOUNTS} amounts before this one (exact, linear interpolation).",
        "account",
    ),
]

FEATURES: Final[dict[str, FeatureSpec]] = {spec.name: spec for spec in _SPECS}
FEATURE_NAMES: Final[tuple[str, ...]] = tuple(FEATURES)
ENTITY_FEATURE_COUNT: Final = len(_entity_specs("account"))


def column(name: str) -> int:
    """Column index of a feature in the engine's output matrix."""
    return FEATURE_NAMES.index(name)
