"""Numba kernels: the per-event state updates and feature computations.

Each kernel walks a micro-batch in release order (order matters: an event sees
the state left by every event before it) and writes feature columns into a
float64 matrix where NaN means "undefined" (None in JSON). Arithmetic is plain
IEEE double without fastmath, so the same inputs give bit-identical outputs
online, offline and after a restore.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from features.registry import DISTINCT_BUCKET_SECONDS, GEO_MIN_HOURS

_EARTH_RADIUS_KM = 6371.0088
_HOUR = 3600.0
_DAY = 86400.0


@njit(cache=True)
def entity_windows(
    times: np.ndarray,
    amounts: np.ndarray,
    slots: np.ndarray,
    apply: np.ndarray,
    widths: np.ndarray,
    counts: np.ndarray,
    offsets: np.ndarray,
    ring_id: np.ndarray,
    ring_cnt: np.ndarray,
    ring_sum: np.ndarray,
    ring_sq: np.ndarray,
    ring_max: np.ndarray,
    last_time: np.ndarray,
    hist_n: np.ndarray,
    hist_mean: np.ndarray,
    hist_m2: np.ndarray,
    out: np.ndarray,
    col0: int,
) -> None:
    """Windowed count/sum/mean/std/max, time since last and running history stats of one entity kind."""
    n_windows = widths.shape[0]
    for i in range(times.shape[0]):
        s = slots[i]
        if s < 0:
            continue  # the transaction has no such entity: every column stays NaN
        t = times[i]
        x = amounts[i]
        if apply[i]:
            for w in range(n_windows):
                b = np.int64(math.floor(t / widths[w]))
                j = offsets[w] + b % counts[w]
                if ring_id[s, j] != b:
                    ring_id[s, j] = b
                    ring_cnt[s, j] = 0.0
                    ring_sum[s, j] = 0.0
                    ring_sq[s, j] = 0.0
                    ring_max[s, j] = -np.inf
                ring_cnt[s, j] += 1.0
                ring_sum[s, j] += x
                ring_sq[s, j] += x * x
                if x > ring_max[s, j]:
                    ring_max[s, j] = x
        col = col0
        for w in range(n_windows):
            b_now = np.int64(math.floor(t / widths[w]))
            lo = b_now - counts[w]
            c = 0.0
            sm = 0.0
            sq = 0.0
            mx = -np.inf
            for j in range(offsets[w], offsets[w] + counts[w]):
                b = ring_id[s, j]
                if lo < b <= b_now:
                    c += ring_cnt[s, j]
                    sm += ring_sum[s, j]
                    sq += ring_sq[s, j]
                    if ring_max[s, j] > mx:
                        mx = ring_max[s, j]
            if not apply[i]:
                # A late event is not folded into state, but its windows still include it.
                c += 1.0
                sm += x
                sq += x * x
                if x > mx:
                    mx = x
            out[i, col] = c
            out[i, col + 1] = sm
            if c > 0.0:
                mean = sm / c
                var = sq / c - mean * mean
                out[i, col + 2] = mean
                # sum-of-squares cancels catastrophically for near-constant amounts: call that 0.
                out[i, col + 3] = math.sqrt(var) if var > 1e-12 * mean * mean else 0.0
                out[i, col + 4] = mx
            col += 5
        previous = last_time[s]
        if not math.isnan(previous):
            out[i, col] = max(t - previous, 0.0)
        hn = hist_n[s]
        out[i, col + 1] = hn
        if hn > 0.0:
            out[i, col + 2] = hist_mean[s]
        if hn > 1.0:
            std = math.sqrt(hist_m2[s] / (hn - 1.0))
            out[i, col + 3] = std
            if std > 0.0:
                out[i, col + 4] = (x - hist_mean[s]) / std
        if apply[i]:
            if math.isnan(previous) or t > previous:
                last_time[s] = t
            # Welford's update: stable running mean and variance over all history.
            hn += 1.0
            delta = x - hist_mean[s]
            hist_mean[s] += delta / hn
            hist_m2[s] += delta * (x - hist_mean[s])
            hist_n[s] = hn


@njit(cache=True)
def pair_times(
    seen: Any,
    accounts: np.ndarray,
    partners: np.ndarray,
    times: np.ndarray,
    apply: np.ndarray,
    shift: int,
    previous: np.ndarray,
) -> None:
    """Previous sighting of each (account, partner) pair into `previous` (NaN when new), recording this one.

    `seen` is a Numba typed dict (pair key -> event time last seen): ~40 bytes a pair and no
    Python objects per lookup. A partner < 0 means the pair does not exist (e.g. no device).
    """
    for i in range(accounts.shape[0]):
        partner = partners[i]
        if partner < 0:
            continue
        key = accounts[i] * shift + partner
        last = seen.get(key, np.nan)
        previous[i] = last
        if apply[i] and (math.isnan(last) or times[i] > last):
            seen[key] = times[i]


@njit(cache=True)
def pair_arrays(seen: Any) -> tuple[np.ndarray, np.ndarray]:
    """Keys and times of a pair map, for snapshots."""
    keys = np.empty(len(seen), dtype=np.int64)
    times = np.empty(len(seen), dtype=np.float64)
    for index, (key, value) in enumerate(seen.items()):
        keys[index] = key
        times[index] = value
    return keys, times


@njit(cache=True)
def pair_load(seen: Any, keys: np.ndarray, times: np.ndarray) -> None:
    """Insert snapshot arrays into a pair map."""
    for index in range(keys.shape[0]):
        seen[keys[index]] = times[index]


@njit(cache=True)
def distinct_24h(
    times: np.ndarray,
    slots: np.ndarray,
    previous: np.ndarray,
    apply: np.ndarray,
    ring_id: np.ndarray,
    ring_cnt: np.ndarray,
    out: np.ndarray,
    col: int,
    new_col: int,
) -> None:
    """Distinct partners of an entity in 24 h, from the time each (entity, partner) pair was last seen.

    Each bucket counts the partners whose *latest* sighting falls in it, so a
    repeat moves its partner to the current bucket and the window sum counts
    each partner once. `previous` is NaN for a pair never seen; a slot < 0
    means the pair does not exist (e.g. no device).
    """
    n_buckets = ring_id.shape[1]
    width = float(DISTINCT_BUCKET_SECONDS)
    for i in range(times.shape[0]):
        s = slots[i]
        if s < 0:
            continue
        t = times[i]
        b_now = np.int64(math.floor(t / width))
        p = previous[i]
        seen = not math.isnan(p)
        if new_col >= 0:
            out[i, new_col] = 0.0 if seen else 1.0
        counted = False  # is this pair already counted inside the window?
        if seen:
            b_prev = np.int64(math.floor(p / width))
            counted = b_now - n_buckets < b_prev <= b_now and ring_id[s, b_prev % n_buckets] == b_prev
        if apply[i]:
            if counted:
                ring_cnt[s, b_prev % n_buckets] -= 1.0
            j = b_now % n_buckets
            if ring_id[s, j] != b_now:
                ring_id[s, j] = b_now
                ring_cnt[s, j] = 0.0
            ring_cnt[s, j] += 1.0
        total = 0.0
        for j in range(n_buckets):
            b = ring_id[s, j]
            if b_now - n_buckets < b <= b_now:
                total += ring_cnt[s, j]
        if not apply[i] and not counted:
            total += 1.0
        out[i, col] = total


@njit(cache=True)
def account_extras(
    times: np.ndarray,
    amounts: np.ndarray,
    slots: np.ndarray,
    lats: np.ndarray,
    lons: np.ndarray,
    apply: np.ndarray,
    geo_last: np.ndarray,
    hours: np.ndarray,
    recent: np.ndarray,
    recent_n: np.ndarray,
    out: np.ndarray,
    geo_col: int,
    hour_col: int,
    robust_col: int,
    quartile_col: int,
) -> None:
    """Geo velocity, hour-of-day typicality and robust (median/MAD, quartiles) stats of the account."""
    size = recent.shape[1]
    for i in range(times.shape[0]):
        s = slots[i]
        t = times[i]
        x = amounts[i]
        lat = lats[i]
        lon = lons[i]
        if not math.isnan(lat) and not math.isnan(geo_last[s, 0]):
            phi1 = math.radians(geo_last[s, 1])
            phi2 = math.radians(lat)
            dphi = phi2 - phi1
            dlmb = math.radians(lon - geo_last[s, 2])
            a = math.sin(dphi / 2.0) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2.0) ** 2
            km = 2.0 * _EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))
            hours_apart = max(abs(t - geo_last[s, 0]) / _HOUR, GEO_MIN_HOURS)
            out[i, geo_col] = km / hours_apart
        hour = np.int64(math.floor((t % _DAY) / _HOUR))
        total = 0.0
        for h in range(24):
            total += hours[s, h]
        if total > 0.0:
            near = hours[s, (hour + 23) % 24] + hours[s, hour] + hours[s, (hour + 1) % 24]
            out[i, hour_col] = near / total
        k = min(recent_n[s], size)
        if k > 0:
            values = np.sort(recent[s, :k])
            median = _median_sorted(values)
            deviations = np.sort(np.abs(values - median))
            mad = _median_sorted(deviations)
            out[i, robust_col] = median
            out[i, robust_col + 1] = mad
            if mad > 0.0:
                out[i, robust_col + 2] = (x - median) / (1.4826 * mad)
            out[i, quartile_col] = _quantile_sorted(values, 0.25)
            out[i, quartile_col + 1] = _quantile_sorted(values, 0.75)
        if apply[i]:
            if not math.isnan(lat) and (math.isnan(geo_last[s, 0]) or t >= geo_last[s, 0]):
                geo_last[s, 0] = t
                geo_last[s, 1] = lat
                geo_last[s, 2] = lon
            hours[s, hour] += 1.0
            recent[s, recent_n[s] % size] = x
            recent_n[s] += 1


@njit(cache=True)
def _median_sorted(values: np.ndarray) -> float:
    k = values.shape[0]
    middle = k // 2
    if k % 2 == 1:
        return float(values[middle])
    return float((values[middle - 1] + values[middle]) / 2.0)


@njit(cache=True)
def _quantile_sorted(values: np.ndarray, q: float) -> float:
    """Quantile by linear interpolation between order statistics (NumPy's default "linear" method).

    The interpolation is NumPy's `_lerp` step for step, so results match `np.quantile` bit for bit.
    """
    k = values.shape[0]
    position = (k - 1) * q
    below = np.int64(math.floor(position))
    if below >= k - 1:
        return float(values[k - 1])
    gamma = position - below
    a = values[below]
    b = values[below + 1]
    diff = b - a
    if gamma >= 0.5:
        return float(b - diff * (1.0 - gamma))
    return float(a + diff * gamma)
