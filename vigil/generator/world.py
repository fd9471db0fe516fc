"""The static world the generator draws from: countries, cities, currencies, merchant categories."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Country:
    code: str
    currency: str
    per_usd: float  # rough units of `currency` per US dollar, so amounts look native
    lat: float  # a large city: merchants and homes scatter around it
    lon: float
    weight: float  # share of accounts and merchants
    utc_offset: int  # hours, so "usual hours" are local hours


COUNTRIES: Final = (
    Country("US", "USD", 1.0, 40.71, -74.01, 0.25, -5),
    Country("GB", "GBP", 0.79, 51.51, -0.13, 0.08, 0),
    Country("DE", "EUR", 0.92, 52.52, 13.40, 0.08, 1),
    Country("FR", "EUR", 0.92, 48.86, 2.35, 0.07, 1),
    Country("ES", "EUR", 0.92, 40.42, -3.70, 0.05, 1),
    Country("IT", "EUR", 0.92, 41.90, 12.50, 0.05, 1),
    Country("NL", "EUR", 0.92, 52.37, 4.90, 0.03, 1),
    Country("JP", "JPY", 150.0, 35.68, 139.69, 0.06, 9),
    Country("BR", "BRL", 5.0, -23.55, -46.63, 0.05, -3),
    Country("IN", "INR", 83.0, 19.08, 72.88, 0.06, 5),
    Country("AU", "AUD", 1.5, -33.87, 151.21, 0.03, 10),
    Country("CA", "CAD", 1.36, 43.65, -79.38, 0.04, -5),
    Country("MX", "MXN", 17.0, 19.43, -99.13, 0.03, -6),
    Country("SG", "SGD", 1.34, 1.35, 103.82, 0.02, 8),
    Country("ZA", "ZAR", 18.5, -26.20, 28.05, 0.02, 2),
    Country("NG", "NGN", 1500.0, 6.52, 3.38, 0.02, 1),
    Country("KW", "KWD", 0.31, 29.38, 47.99, 0.01, 3),
    Country("CH", "CHF", 0.88, 47.37, 8.54, 0.02, 1),
    Country("SE", "SEK", 10.5, 59.33, 18.07, 0.02, 1),
    Country("AE", "AED", 3.67, 25.20, 55.27, 0.01, 4),
)


@dataclass(frozen=True, slots=True)
class Category:
    mcc: str
    kind: str  # "physical" | "online" | "atm" | "transfer"
    spend: float  # multiplier on an account's typical amount
    weight: float


CATEGORIES: Final = (
    Category("5411", "physical", 1.0, 0.22),  # grocery
    Category("5812", "physical", 1.3, 0.16),  # restaurants
    Category("5541", "physical", 1.6, 0.08),  # fuel
    Category("5912", "physical", 0.8, 0.06),  # pharmacy
    Category("5651", "physical", 2.2, 0.06),  # clothing
    Category("5732", "physical", 4.0, 0.03),  # electronics
    Category("5311", "online", 2.0, 0.12),  # department / marketplace
    Category("5999", "online", 1.5, 0.08),  # miscellaneous retail
    Category("5816", "online", 0.4, 0.06),  # digital goods, games
    Category("4511", "online", 9.0, 0.03),  # airlines
    Category("7011", "online", 6.0, 0.03),  # hotels
    Category("6011", "atm", 3.0, 0.04),  # cash withdrawal
    Category("4829", "transfer", 5.0, 0.03),  # money transfer
)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def far_countries(min_km: float = 3000.0) -> list[npt.NDArray[np.int64]]:
    """For each country index, the indices of countries at least `min_km` away."""
    result = []
    for home in COUNTRIES:
        far = [
            index
            for index, other in enumerate(COUNTRIES)
            if haversine_km(home.lat, home.lon, other.lat, other.lon) >= min_km
        ]
        result.append(np.array(far, dtype=np.int64))
    return result
