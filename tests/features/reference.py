"""A brute-force reference for the feature definitions: recomputes everything from full history.

Slow on purpose (quadratic) and written straight from the registry's one-line
descriptions, so the engine's incremental state can be checked against it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from features.registry import DISTINCT_BUCKET_SECONDS, DISTINCT_BUCKETS, ENTITY_KINDS, RECENT_AMOUNTS, WINDOWS


@dataclass(frozen=True)
class Event:
    time: float
    account: str
    card: str | None
    merchant: str
    device: str | None
    ip: str | None
    country: str
    amount: float
    lat: float | None = None
    lon: float | None = None

    def entity(self, kind: str) -> str | None:
        return {
            "account": self.account,
            "card": self.card,
            "merchant": self.merchant,
            "device": self.device,
            "ip": self.ip,
        }[kind]


def _in_window(t_then: float, t_now: float, width: float, count: int) -> bool:
    return math.floor(t_now / width) - count < math.floor(t_then / width) <= math.floor(t_now / width)


def _distinct(partners: dict[str, float], now: float) -> float:
    return float(sum(_in_window(t, now, DISTINCT_BUCKET_SECONDS, DISTINCT_BUCKETS) for t in partners.values()))


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _quartiles(values: list[float]) -> tuple[float, float]:
    """Lower and upper quartile, linear interpolation between order statistics (Hyndman-Fan type 7)."""
    if len(values) == 1:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def reference_features(events: list[Event]) -> list[dict[str, float | None]]:
    """Features of each event given every earlier one (events in release order)."""
    rows = []
    for i, event in enumerate(events):
        past = events[:i]
        row: dict[str, float | None] = {"amount": event.amount, "hour_of_day": float(int(event.time % 86400 // 3600))}
        for kind in ENTITY_KINDS:
            key = event.entity(kind)
            history = [e for e in past if key is not None and e.entity(kind) == key]
            for suffix, _, width, count in WINDOWS:
                inside = [e.amount for e in [*history, event] if _in_window(e.time, event.time, width, count)]
                names = [
                    f"{kind}_count_{suffix}",
                    f"{kind}_amount_sum_{suffix}",
                    f"{kind}_amount_mean_{suffix}",
                    f"{kind}_amount_std_{suffix}",
                    f"{kind}_amount_max_{suffix}",
                ]
                if key is None:
                    row.update(dict.fromkeys(names))
                    continue
                row[names[0]] = float(len(inside))
                row[names[1]] = math.fsum(inside)
                row[names[2]] = math.fsum(inside) / len(inside)
                row[names[3]] = statistics.pstdev(inside)
                row[names[4]] = max(inside)
            amounts = [e.amount for e in history]
            if key is None:
                for name in (
                    "seconds_since_last",
                    "amount_history_count",
                    "amount_history_mean",
                    "amount_history_std",
                    "amount_zscore",
                ):
                    row[f"{kind}_{name}"] = None
                continue
            row[f"{kind}_seconds_since_last"] = event.time - max(e.time for e in history) if history else None
            row[f"{kind}_amount_history_count"] = float(len(amounts))
            row[f"{kind}_amount_history_mean"] = statistics.fmean(amounts) if amounts else None
            std = statistics.stdev(amounts) if len(amounts) > 1 else None
            row[f"{kind}_amount_history_std"] = std
            row[f"{kind}_amount_zscore"] = (event.amount - statistics.fmean(amounts)) / std if std else None
        mine = [e for e in past if e.account == event.account]
        row["account_new_merchant"] = 0.0 if any(e.merchant == event.merchant for e in mine) else 1.0
        row["account_new_country"] = 0.0 if any(e.country == event.country for e in mine) else 1.0
        row["account_new_device"] = (
            None if event.device is None else (0.0 if any(e.device == event.device for e in mine) else 1.0)
        )
        upto = [*mine, event]
        row["account_distinct_merchants_24h"] = _distinct({e.merchant: e.time for e in upto}, event.time)
        row["account_distinct_countries_24h"] = _distinct({e.country: e.time for e in upto}, event.time)
        for kind in ("device", "ip"):
            key = event.entity(kind)
            row[f"{kind}_distinct_accounts_24h"] = (
                None
                if key is None
                else _distinct({e.account: e.time for e in [*past, event] if e.entity(kind) == key}, event.time)
            )
        located = [e for e in mine if e.lat is not None]
        if event.lat is not None and located:
            last = located[-1]
            assert last.lat is not None and last.lon is not None and event.lon is not None
            phi1, phi2 = math.radians(last.lat), math.radians(event.lat)
            a = (
                math.sin((phi2 - phi1) / 2) ** 2
                + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(event.lon - last.lon) / 2) ** 2
            )
            km = 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))
            row["account_geo_velocity_kmh"] = km / max(abs(event.time - last.time) / 3600, 1 / 60)
        else:
            row["account_geo_velocity_kmh"] = None
        hours = [int(e.time % 86400 // 3600) for e in mine]
        hour = int(event.time % 86400 // 3600)
        near = {(hour - 1) % 24, hour, (hour + 1) % 24}
        row["account_hour_typicality"] = sum(h in near for h in hours) / len(hours) if hours else None
        recent = [e.amount for e in mine][-RECENT_AMOUNTS:]
        if recent:
            median = _median(recent)
            mad = _median([abs(x - median) for x in recent])
            row["account_amount_history_median"] = median
            row["account_amount_history_mad"] = mad
            row["account_amount_robust_zscore"] = (event.amount - median) / (1.4826 * mad) if mad > 0 else None
            row["account_amount_history_q1"], row["account_amount_history_q3"] = _quartiles(recent)
        else:
            row["account_amount_history_median"] = None
            row["account_amount_history_mad"] = None
            row["account_amount_robust_zscore"] = None
            row["account_amount_history_q1"] = None
            row["account_amount_history_q3"] = None
        rows.append(row)
    return rows
