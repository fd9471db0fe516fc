"""Reference exchange rates for rules that compare amounts across currencies (`in_usd`).

Thresholds such as "a tiny payment" or "a large one" mean the same money in every
currency: 10 is a few cents in yen, rupees or naira. The rates are approximate
mid-market units per US dollar (reviewed 2026-11); they drift, so they serve
order-of-magnitude thresholds, not accounting. A currency missing here converts to
null, so a rule comparing it is unknown (does not fire) rather than wrong.
"""

from __future__ import annotations

from typing import Final

# Units of each currency per US dollar.
UNITS_PER_USD: Final[dict[str, float]] = {
    "USD": 1.0, "EUR": 0.92, "GBP": 0.79, "CHF": 0.88, "JPY": 150.0, "CNY": 7.2, "HKD": 7.8,
    "TWD": 32.0, "KRW": 1350.0, "SGD": 1.34, "MYR": 4.7, "THB": 36.0, "IDR": 15_800.0, "PHP": 57.0,
    "VND": 25_000.0, "INR": 83.0, "PKR": 280.0, "BDT": 120.0, "LKR": 300.0, "NPR": 133.0,
    "AUD": 1.5, "NZD": 1.65, "CAD": 1.36, "MXN": 17.0, "BRL": 5.0, "ARS": 1000.0, "CLP": 950.0,
    "COP": 4000.0, "PEN": 3.75, "UYU": 40.0, "PYG": 7500.0, "BOB": 6.9, "GTQ": 7.8, "CRC": 510.0,
    "DOP": 59.0, "JMD": 156.0, "TTD": 6.8, "SEK": 10.5, "NOK": 10.7, "DKK": 6.9, "ISK": 138.0,
    "PLN": 4.0, "CZK": 23.0, "HUF": 360.0, "RON": 4.6, "BGN": 1.8, "RSD": 108.0, "TRY": 33.0,
    "UAH": 41.0, "RUB": 92.0, "KZT": 480.0, "GEL": 2.7, "AMD": 390.0, "AZN": 1.7, "ILS": 3.7,
    "AED": 3.67, "SAR": 3.75, "QAR": 3.64, "KWD": 0.31, "BHD": 0.376, "OMR": 0.385, "JOD": 0.71,
    "EGP": 48.0, "MAD": 10.0, "TND": 3.1, "DZD": 135.0, "NGN": 1500.0, "GHS": 15.0, "KES": 130.0,
    "UGX": 3800.0, "TZS": 2600.0, "RWF": 1300.0, "ETB": 115.0, "ZAR": 18.5, "BWP": 13.6, "NAD": 18.5,
    "ZMW": 26.0, "MUR": 46.0, "XOF": 605.0, "XAF": 605.0,
}  # fmt: skip


def in_usd(amount: float, currency: str) -> float | None:
    """`amount` of `currency` in US dollars at the reference rate; None for a currency without one."""
    rate = UNITS_PER_USD.get(currency.upper())
    return None if rate is None else amount / rate
