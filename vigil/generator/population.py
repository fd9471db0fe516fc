"""Accounts and merchants with stable habits, drawn once from the seed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from core.contracts import currency_minor_units
from vigil.generator.world import CATEGORIES, COUNTRIES, haversine_km

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

USUAL_MERCHANTS: Final = 6

# Local-hour activity of four kinds of people: daytime, evening, night owls, anytime.
_HOURS: Final = np.arange(24)
HOUR_PROFILES: Final[Floats] = np.stack(
    [
        np.where((_HOURS >= 8) & (_HOURS < 20), 1.0, 0.04),
        np.where((_HOURS >= 12) & (_HOURS < 24), 1.0, 0.05),
        np.where((_HOURS >= 18) | (_HOURS < 4), 1.0, 0.05),
        np.where((_HOURS >= 7) & (_HOURS < 23), 1.0, 0.3),
    ]
)
PROFILE_SHARES: Final = (0.45, 0.25, 0.1, 0.2)


@dataclass(frozen=True, slots=True)
class Population:
    """Column arrays for accounts (index a) and merchants (index m); strings pre-rendered once."""

    tenants: tuple[str, ...]
    account_ids: list[str]
    account_tenant: list[str]
    home: Ints  # country index
    mu: Floats  # log of the typical amount in USD
    sigma: Floats
    group: Ints  # (hour profile, home utc offset) group, for hour-aware sampling
    activity: Floats
    usual: Ints  # (accounts, USUAL_MERCHANTS) merchant indices
    cards: list[tuple[str, ...]]
    devices: list[str]
    ips: list[str]
    merchant_ids: list[str]
    merchant_country: Ints
    merchant_category: Ints
    merchant_lat: Floats
    merchant_lon: Floats
    merchant_popularity: Floats
    by_country: tuple[Ints, ...]  # merchants per country, any kind but transfer
    shops: tuple[Ints, ...]  # per home country: where its residents shop (home, else the nearest country with shops)
    online_by_country: tuple[Ints, ...]
    physical_by_country: tuple[Ints, ...]
    group_profile: Ints  # per group: hour profile index
    group_offset: Ints  # per group: utc offset of its accounts' home
    group_members: tuple[Ints, ...]  # per group: account indices
    group_cumulative: tuple[Floats, ...]  # per group: cumulative activity (sampling by activity)

    @property
    def size(self) -> int:
        return len(self.account_ids)


def currency_of(country: int) -> str:
    return COUNTRIES[country].currency


SCALES: Final = tuple(currency_minor_units(c.currency) for c in COUNTRIES)
PER_USD: Final = np.array([c.per_usd for c in COUNTRIES])
CATEGORY_SPEND: Final = np.array([c.spend for c in CATEGORIES])
CATEGORY_KIND: Final = tuple(c.kind for c in CATEGORIES)


def _ip(index: int) -> str:
    # Deterministic, valid, spread over public-looking ranges.
    return f"{(index * 7919) % 213 + 11}.{(index >> 8) % 256}.{index % 256}.{(index * 31) % 253 + 1}"


def _shops(by_country: tuple[Ints, ...], *, fallback: Ints) -> tuple[Ints, ...]:
    """Where each country's residents shop: at home, else in the nearest country with at least two merchants.

    Usual merchants drawn from anywhere in the world made legitimate card-present payments
    jump between continents minutes apart (physically impossible travel).
    """
    stocked = [c for c, pool in enumerate(by_country) if pool.size >= 2]
    result = []
    for country, pool in enumerate(by_country):
        if pool.size >= 2 or not stocked:
            result.append(pool if pool.size >= 2 else fallback)
            continue
        here = COUNTRIES[country]
        nearest = min(stocked, key=lambda c: haversine_km(here.lat, here.lon, COUNTRIES[c].lat, COUNTRIES[c].lon))
        result.append(by_country[nearest])
    return tuple(result)


def build_population(
    *, accounts: int, merchants: int, tenants: tuple[str, ...], rng: np.random.Generator
) -> Population:
    """Draw `accounts` accounts and `merchants` merchants (deterministic for a given rng state)."""
    country_weights = np.array([c.weight for c in COUNTRIES])
    country_weights /= country_weights.sum()
    category_weights = np.array([c.weight for c in CATEGORIES])
    category_weights /= category_weights.sum()

    merchant_country = rng.choice(len(COUNTRIES), size=merchants, p=country_weights).astype(np.int64)
    merchant_category = rng.choice(len(CATEGORIES), size=merchants, p=category_weights).astype(np.int64)
    merchant_lat = np.array([COUNTRIES[c].lat for c in merchant_country]) + rng.normal(0, 0.15, merchants)
    merchant_lon = np.array([COUNTRIES[c].lon for c in merchant_country]) + rng.normal(0, 0.15, merchants)
    merchant_popularity = rng.pareto(1.5, merchants) + 0.1
    kinds = np.array([CATEGORY_KIND[c] for c in merchant_category])
    everyday = np.flatnonzero(kinds != "transfer")
    by_country = tuple(everyday[merchant_country[everyday] == c] for c in range(len(COUNTRIES)))
    online = np.flatnonzero(kinds == "online")
    physical = np.flatnonzero(kinds == "physical")
    online_by_country = tuple(online[merchant_country[online] == c] for c in range(len(COUNTRIES)))
    physical_by_country = tuple(physical[merchant_country[physical] == c] for c in range(len(COUNTRIES)))

    home = rng.choice(len(COUNTRIES), size=accounts, p=country_weights).astype(np.int64)
    mu = rng.normal(3.2, 0.6, accounts)  # median typical spend around 25 USD
    sigma = rng.uniform(0.35, 0.9, accounts)
    profile = rng.choice(len(PROFILE_SHARES), size=accounts, p=PROFILE_SHARES).astype(np.int64)
    activity = rng.lognormal(0.0, 0.8, accounts)
    usual = np.empty((accounts, USUAL_MERCHANTS), dtype=np.int64)
    shops = _shops(by_country, fallback=everyday if everyday.size else np.arange(merchants, dtype=np.int64))
    for country in range(len(COUNTRIES)):
        members = np.flatnonzero(home == country)
        if not members.size:
            continue
        pool = shops[country]
        weights = merchant_popularity[pool] / merchant_popularity[pool].sum()
        usual[members] = rng.choice(pool, size=(members.size, USUAL_MERCHANTS), p=weights)
    card_counts = rng.choice((1, 2), size=accounts, p=(0.7, 0.3))
    tenant_of = rng.integers(0, len(tenants), size=accounts)

    offsets = np.array([COUNTRIES[c].utc_offset for c in home], dtype=np.int64)
    keys = profile * 100 + (offsets + 24)
    unique_keys, group = np.unique(keys, return_inverse=True)
    group = group.astype(np.int64)
    members_of = tuple(np.flatnonzero(group == g) for g in range(unique_keys.size))
    return Population(
        tenants=tenants,
        account_ids=[f"acct-{a:07d}" for a in range(accounts)],
        account_tenant=[tenants[t] for t in tenant_of],
        home=home,
        mu=mu,
        sigma=sigma,
        group=group,
        activity=activity,
        usual=usual,
        cards=[tuple(f"card-{a:07d}-{k}" for k in range(n)) for a, n in enumerate(card_counts)],
        devices=[f"dev-{a:07d}" for a in range(accounts)],
        ips=[_ip(a) for a in range(accounts)],
        merchant_ids=[f"m-{m:06d}" for m in range(merchants)],
        merchant_country=merchant_country,
        merchant_category=merchant_category,
        merchant_lat=merchant_lat,
        merchant_lon=merchant_lon,
        merchant_popularity=merchant_popularity,
        by_country=by_country,
        shops=shops,
        online_by_country=online_by_country,
        physical_by_country=physical_by_country,
        group_profile=(unique_keys // 100).astype(np.int64),
        group_offset=(unique_keys % 100 - 24).astype(np.int64),
        group_members=members_of,
        group_cumulative=tuple(np.cumsum(activity[m]) for m in members_of),
    )
