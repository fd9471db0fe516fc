"""The feature engine: per-entity state plus the kernels, shared by the online and offline paths.

`FeatureEngine.compute(batch)` takes transactions in release order and returns
a float matrix (one row per transaction, one column per registry feature, NaN
for None). State lives in compact numpy arrays indexed by an entity's slot;
pair "last seen" maps (account x merchant, country, device, ip) stay in Python
dicts because they are sparse. `to_bytes()`/`from_bytes()` round-trip it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, overload

import numpy as np
import orjson
from numba import njit
from numba import types as numba_types
from numba.typed import Dict as NumbaDict

from core.contracts import Transaction
from features import kernels
from features.errors import FeaturesError, IncompatibleStateError
from features.registry import (
    DISTINCT_BUCKETS,
    ENTITY_FEATURE_COUNT,
    ENTITY_KINDS,
    FEATURE_NAMES,
    FEATURE_SET_VERSION,
    RECENT_AMOUNTS,
    WINDOWS,
    column,
)

_WIDTHS: Final = np.array([float(w[2]) for w in WINDOWS])
_COUNTS: Final = np.array([w[3] for w in WINDOWS], dtype=np.int64)
_OFFSETS: Final = np.concatenate(([0], np.cumsum(_COUNTS)[:-1])).astype(np.int64)
_RING: Final = int(_COUNTS.sum())
_EMPTY_BUCKET: Final = np.iinfo(np.int32).min // 2
_PAIR_SHIFT: Final = 1 << 32
_STATE_FORMAT: Final = 3  # 3: entity keys are tenant-scoped (`entity_key`)
_STATE_MAGIC: Final = b"VFE3"
_PAIR_NAMES: Final = ("merchant", "country", "device", "ip")
_PAIR_BYTES: Final = 48  # a Numba typed dict entry: key, value, hash and index slots


def _pair_map(items: dict[int, float] | None = None) -> Any:
    """An empty (or filled) pair map: a Numba typed dict int64 -> float64."""
    seen = NumbaDict.empty(key_type=numba_types.int64, value_type=numba_types.float64)
    for key, value in (items or {}).items():
        seen[key] = value
    return seen


@njit(cache=True)
def _pair_copy(source: Any, target: Any, source_keys: np.ndarray, target_keys: np.ndarray) -> None:
    """Copy the pairs of `source_keys` that exist in `source` into `target` under `target_keys`."""
    for index in range(source_keys.shape[0]):
        key = source_keys[index]
        if key >= 0 and key in source:
            target[target_keys[index]] = source[key]


@njit(cache=True)
def _pair_clear(seen: Any) -> None:
    seen.clear()  # ~5 us; a new typed dict costs ~90 us


def entity_key(tenant_id: str, entity_id: str) -> str:
    """An entity's key in the state: ids are each tenant's own, so two tenants' "acct-1" are two entities.

    `/` cannot occur in a tenant id (`core.contracts.Identifier`), so the key is unambiguous.
    """
    return f"{tenant_id}/{entity_id}"


@overload
def entity_keys(tenant_ids: Sequence[str], entity_ids: list[str]) -> list[str]: ...
@overload
def entity_keys(tenant_ids: Sequence[str], entity_ids: list[str | None]) -> list[str | None]: ...
def entity_keys(tenant_ids: Sequence[str], entity_ids: list[str] | list[str | None]) -> list[str] | list[str | None]:
    """`entity_key` for a column, formatted inline (the stream calls it for every row); None stays None."""
    return [None if e is None else f"{t}/{e}" for t, e in zip(tenant_ids, entity_ids, strict=True)]


def epoch_seconds(moment: datetime) -> float:
    """Event time in seconds since the epoch, computed the same way on every path (exact to 1 us)."""
    if moment.tzinfo is None:
        raise FeaturesError("event times must carry a UTC offset")
    # For aware datetimes CPython computes integer microseconds / 10**6 (one correctly rounded
    # division): the same float as the offline path's `microseconds / 1_000_000`.
    return moment.timestamp()


@dataclass(slots=True)
class Batch:
    """Transactions in release order, as columns (what the kernels need and nothing more).

    Accounts, cards, merchants, devices and IPs are entity keys, scoped by tenant (`entity_key`).
    """

    times: list[float]
    accounts: list[str]
    cards: list[str | None]
    merchants: list[str]
    devices: list[str | None]
    ips: list[str | None]
    countries: list[str]
    amounts: list[float]
    lats: list[float | None]
    lons: list[float | None]
    apply: list[bool]

    @classmethod
    def empty(cls) -> Batch:
        return cls([], [], [], [], [], [], [], [], [], [], [])

    def __len__(self) -> int:
        return len(self.times)

    def append(
        self,
        *,
        time: float,
        account: str,
        card: str | None,
        merchant: str,
        device: str | None,
        ip: str | None,
        country: str,
        amount: float,
        lat: float | None,
        lon: float | None,
        apply: bool = True,
    ) -> None:
        self.times.append(time)
        self.accounts.append(account)
        self.cards.append(card)
        self.merchants.append(merchant)
        self.devices.append(device)
        self.ips.append(ip)
        self.countries.append(country)
        self.amounts.append(amount)
        self.lats.append(lat)
        self.lons.append(lon)
        self.apply.append(apply)

    def append_transaction(self, transaction: Transaction, *, apply: bool = True) -> None:
        """Append a validated transaction with the normalisation the stream's decoder applies."""
        located = transaction.lat is not None and transaction.lon is not None
        tenant = transaction.tenant_id
        self.append(
            time=epoch_seconds(transaction.occurred_at),
            account=entity_key(tenant, transaction.account_id),
            card=entity_key(tenant, transaction.card_id) if transaction.card_id else None,
            merchant=entity_key(tenant, transaction.merchant_id),
            device=entity_key(tenant, transaction.device_id) if transaction.device_id else None,
            ip=None if transaction.ip is None else entity_key(tenant, str(transaction.ip)),
            country=transaction.country.upper(),
            amount=float(transaction.amount),
            lat=transaction.lat if located else None,
            lon=transaction.lon if located else None,
            apply=apply,
        )


_DEFAULT_CAPACITY: Final = 1024


class _Kind:
    """Slots and window/history state of one entity kind (account, card, ...)."""

    def __init__(self, capacity: int = _DEFAULT_CAPACITY, *, distinct: bool = False) -> None:
        # Key -> slot, with None -> -1 so a whole column is looked up by one C-level map().
        self.slots: dict[str | None, int] = {None: -1}
        self.names: list[str] = []  # key of each slot, in slot order
        self.capacity = 0
        # Compact dtypes: bucket ids fit int32 (bucket widths >= 5 min) and counts are exact in float32
        # up to 16M per bucket; amounts stay float64 so sums and maxima are exact to the cent.
        self.ring_id = np.empty((0, _RING), dtype=np.int32)
        self.ring_cnt = np.empty((0, _RING), dtype=np.float32)
        self.ring_sum = np.empty((0, _RING))
        self.ring_sq = np.empty((0, _RING))
        self.ring_max = np.empty((0, _RING))
        self.last_time = np.empty(0)
        self.hist_n = np.empty(0)
        self.hist_mean = np.empty(0)
        self.hist_m2 = np.empty(0)
        # Distinct-partner rings only where a feature uses them (account, device, ip).
        width = DISTINCT_BUCKETS if distinct else 0
        self.dist_id = np.empty((0, width), dtype=np.int32)
        self.dist_cnt = np.empty((0, width), dtype=np.float32)
        self._grow(capacity)

    _FILL: Final = {
        "ring_id": _EMPTY_BUCKET,
        "ring_cnt": 0.0,
        "ring_sum": 0.0,
        "ring_sq": 0.0,
        "ring_max": -np.inf,
        "last_time": np.nan,
        "hist_n": 0.0,
        "hist_mean": 0.0,
        "hist_m2": 0.0,
        "dist_id": _EMPTY_BUCKET,
        "dist_cnt": 0.0,
    }

    def _grow(self, capacity: int) -> None:
        for name, fill in self._FILL.items():
            old = getattr(self, name)
            new = np.full((capacity, *old.shape[1:]), fill, dtype=old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)
        self.capacity = capacity

    def slots_of(self, keys: list[str] | list[str | None]) -> np.ndarray:
        """Slot of each key (new keys get the next slot; None -> -1)."""
        slots = self.slots
        found: list[int | None] = list(map(slots.get, keys))
        if None in found:  # new keys: rare once the state is warm
            names = self.names
            for index, slot in enumerate(found):
                if slot is None:
                    key = keys[index]
                    slot = slots.get(key)
                    if slot is None:
                        slot = slots[key] = len(names)
                        names.append(str(key))
                    found[index] = slot
        return np.array(found, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.names)

    def ensure_capacity(self) -> None:
        if len(self.names) > self.capacity:
            self._grow(max(len(self.names), self.capacity * 3 // 2))

    def arrays(self) -> dict[str, np.ndarray]:
        size = len(self.names)
        return {name: getattr(self, name)[:size] for name in self._FILL}

    def load(self, arrays: dict[str, np.ndarray], names: list[str]) -> None:
        self.names = list(names)
        self.slots = {None: -1, **{name: slot for slot, name in enumerate(names)}}
        self.capacity = 0
        for name in self._FILL:
            setattr(self, name, arrays[name].copy())
        self.capacity = len(names)
        self._grow(max(1024, len(names) * 3 // 2))

    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in self._FILL)


class _AccountExtras:
    def __init__(self) -> None:
        self.geo_last = np.empty((0, 3))
        self.hours = np.empty((0, 24), dtype=np.float32)
        self.recent = np.empty((0, RECENT_AMOUNTS))
        self.recent_n = np.empty(0, dtype=np.int64)
        self.country_ring_id = np.empty((0, DISTINCT_BUCKETS), dtype=np.int32)
        self.country_ring_cnt = np.empty((0, DISTINCT_BUCKETS), dtype=np.float32)

    _FILL: Final = {
        "geo_last": np.nan,
        "hours": 0.0,
        "recent": 0.0,
        "recent_n": 0,
        "country_ring_id": _EMPTY_BUCKET,
        "country_ring_cnt": 0.0,
    }

    def resize(self, capacity: int) -> None:
        for name, fill in self._FILL.items():
            old = getattr(self, name)
            if old.shape[0] >= capacity:
                continue
            new = np.full((capacity, *old.shape[1:]), fill, dtype=old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)

    def arrays(self, size: int) -> dict[str, np.ndarray]:
        return {f"extra_{name}": getattr(self, name)[:size] for name in self._FILL}

    def load(self, arrays: dict[str, np.ndarray], capacity: int) -> None:
        for name in self._FILL:
            setattr(self, name, arrays[f"extra_{name}"].copy())
        self.resize(capacity)

    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in self._FILL)


_GEO: Final = column("account_geo_velocity_kmh")
_HOUR_TYPICAL: Final = column("account_hour_typicality")
_ROBUST: Final = column("account_amount_history_median")
_QUARTILES: Final = column("account_amount_history_q1")
_NEW_MERCHANT: Final = column("account_new_merchant")
_NEW_COUNTRY: Final = column("account_new_country")
_NEW_DEVICE: Final = column("account_new_device")
_DISTINCT_MERCHANTS: Final = column("account_distinct_merchants_24h")
_DISTINCT_COUNTRIES: Final = column("account_distinct_countries_24h")
_DEVICE_ACCOUNTS: Final = column("device_distinct_accounts_24h")
_IP_ACCOUNTS: Final = column("ip_distinct_accounts_24h")


@dataclass(frozen=True, slots=True)
class StateMark:
    """What a full copy covered, so later copies can carry only what changed since (deltas)."""

    time: float  # newest applied event time at the copy: anything applied later is at or after it
    sizes: dict[str, int]  # slots per entity kind at the copy


@dataclass(frozen=True, slots=True)
class StateCopy:
    """A detached copy of an engine's state (full, or a delta since a mark); `to_bytes()` is thread-safe."""

    header: dict[str, Any]
    arrays: dict[str, np.ndarray]
    mark: StateMark | None = None  # set on full copies: deltas are taken against it

    @property
    def is_delta(self) -> bool:
        return bool(self.header.get("delta"))

    def raw_bytes(self) -> int:
        return sum(array.nbytes for array in self.arrays.values())

    def to_bytes(self) -> bytes:
        """Header plus each array compressed on its own with zstd level 1 (no whole-state copy)."""
        import pyarrow as pa

        codec = pa.Codec("zstd", compression_level=1)
        index = []
        chunks = []
        for name, array in self.arrays.items():
            data = np.ascontiguousarray(array)
            chunk = codec.compress(data, asbytes=True) if data.nbytes else b""
            index.append([name, data.dtype.str, list(data.shape), data.nbytes, len(chunk)])
            chunks.append(chunk)
        header = orjson.dumps({**self.header, "arrays": index})
        return b"".join([_STATE_MAGIC, len(header).to_bytes(8, "big"), header, *chunks])


def _copy_into(pool: dict[str, np.ndarray] | None, name: str, array: np.ndarray) -> np.ndarray:
    """A copy of `array`, in `pool[name]` when given (grown with slack when the state outgrew it)."""
    if pool is None:
        return array.copy()
    buffer = pool.get(name)
    rows = array.shape[0]
    if buffer is None or buffer.shape[0] < rows or buffer.shape[1:] != array.shape[1:] or buffer.dtype != array.dtype:
        buffer = pool[name] = np.empty((rows + rows // 4 + 16, *array.shape[1:]), dtype=array.dtype)
    view = buffer[:rows]
    np.copyto(view, array)
    return view


def _read_state(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    import pyarrow as pa

    if data[:4] != _STATE_MAGIC:
        raise IncompatibleStateError("feature state was written by an incompatible version")
    size = int.from_bytes(data[4:12], "big")
    header = orjson.loads(data[12 : 12 + size])
    if header.get("format") != _STATE_FORMAT or header.get("feature_set_version") != FEATURE_SET_VERSION:
        raise IncompatibleStateError("feature state was written by an incompatible version")
    codec = pa.Codec("zstd")
    arrays: dict[str, np.ndarray] = {}
    at = 12 + size
    for name, dtype, shape, raw_size, stored in header.pop("arrays"):
        chunk = data[at : at + stored]
        at += stored
        raw = codec.decompress(chunk, decompressed_size=raw_size, asbytes=True) if raw_size else b""
        arrays[name] = np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape).copy()
    return header, arrays


def _copy_rows(source: Any, target: Any, rows: np.ndarray, fills: Mapping[str, Any]) -> None:
    """Rows `rows` of `source`'s arrays into the first rows of `target`'s (initial values where a row is -1)."""
    size = rows.shape[0]
    known = rows >= 0
    everywhere = bool(known.all())
    for name, fill in fills.items():
        array = getattr(target, name)[:size]
        if everywhere:  # the usual case: every entity is known (the method skips numpy's Python wrapper)
            getattr(source, name).take(rows, axis=0, out=array)
            continue
        array[...] = fill
        if known.any():
            array[known] = getattr(source, name)[rows[known]]


class FeatureEngine:
    """All feature state, and the one function that turns transactions into feature rows."""

    # Newest event time folded into state, and whether applied times never went backwards (true in
    # release order, online and offline). Deltas rely on both (see `_changed`).
    applied_until: float = -math.inf
    in_order: bool = True

    def __init__(self, *, capacities: Mapping[str, int] | None = None) -> None:
        """`capacities`: initial slots per entity kind (default 1,024; state grows as needed).

        A one-transaction scorer sizes it to the history it replays, so it never reallocates.
        """
        sizes = capacities or {}
        self.kinds: dict[str, _Kind] = {
            kind: _Kind(max(1, sizes.get(kind, _DEFAULT_CAPACITY)), distinct=kind in ("account", "device", "ip"))
            for kind in ENTITY_KINDS
        }
        self.extras = _AccountExtras()
        self.extras.resize(self.kinds["account"].capacity)
        self.countries: dict[str, int] = {}
        # Pair key -> event time the pair was last seen (first-seen flags and distinct counts),
        # in Numba typed dicts the kernels update without a Python object per pair.
        self.pairs: dict[str, Any] = {name: _pair_map() for name in _PAIR_NAMES}
        self.processed = 0

    @property
    def width(self) -> int:
        return len(FEATURE_NAMES)

    def compute(self, batch: Batch) -> np.ndarray:
        """Feature rows for `batch` (release order), updating state for rows with `apply`."""
        n = len(batch)
        out = np.full((n, self.width), np.nan)
        if n == 0:
            return out
        kinds = self.kinds
        slot_columns = [
            kinds["account"].slots_of(batch.accounts),
            kinds["card"].slots_of(batch.cards),
            kinds["merchant"].slots_of(batch.merchants),
            kinds["device"].slots_of(batch.devices),
            kinds["ip"].slots_of(batch.ips),
        ]
        for kind in kinds.values():
            kind.ensure_capacity()
        self.extras.resize(kinds["account"].capacity)
        countries = self.countries
        found: list[int | None] = list(map(countries.get, batch.countries))
        if None in found:
            found = [countries.setdefault(c, len(countries)) for c in batch.countries]
        country_ids = np.array(found, dtype=np.int64)
        account_slots, _cards, merchants, device_slots, ip_slots = slot_columns
        times = batch.times
        t = np.array(times, dtype=np.float64)
        ok = np.array(batch.apply, dtype=np.bool_)
        prev_merchant = self._pair_times("merchant", account_slots, merchants, t, ok)
        prev_country = self._pair_times("country", account_slots, country_ids, t, ok)
        prev_device = self._pair_times("device", account_slots, device_slots, t, ok)
        prev_ip = self._pair_times("ip", account_slots, ip_slots, t, ok)

        x = np.array(batch.amounts, dtype=np.float64)
        out[:, 0] = x
        out[:, 1] = np.floor((t % 86_400.0) / 3_600.0)
        for index, kind in enumerate(kinds.values()):
            slots = slot_columns[index]
            kernels.entity_windows(
                t,
                x,
                slots,
                ok,
                _WIDTHS,
                _COUNTS,
                _OFFSETS,
                kind.ring_id,
                kind.ring_cnt,
                kind.ring_sum,
                kind.ring_sq,
                kind.ring_max,
                kind.last_time,
                kind.hist_n,
                kind.hist_mean,
                kind.hist_m2,
                out,
                2 + index * ENTITY_FEATURE_COUNT,
            )
        account = kinds["account"]
        kernels.distinct_24h(
            t,
            account_slots,
            prev_merchant,
            ok,
            account.dist_id,
            account.dist_cnt,
            out,
            _DISTINCT_MERCHANTS,
            _NEW_MERCHANT,
        )
        extras = self.extras
        kernels.distinct_24h(
            t,
            account_slots,
            prev_country,
            ok,
            extras.country_ring_id,
            extras.country_ring_cnt,
            out,
            _DISTINCT_COUNTRIES,
            _NEW_COUNTRY,
        )
        # account_new_device: a pair that exists only when there is a device.
        kernels.distinct_24h(
            t,
            device_slots,
            prev_device,
            ok,
            kinds["device"].dist_id,
            kinds["device"].dist_cnt,
            out,
            _DEVICE_ACCOUNTS,
            _NEW_DEVICE,
        )
        kernels.distinct_24h(
            t,
            ip_slots,
            prev_ip,
            ok,
            kinds["ip"].dist_id,
            kinds["ip"].dist_cnt,
            out,
            _IP_ACCOUNTS,
            -1,
        )
        # NumPy turns None into NaN for a float dtype (no located payment).
        lats = np.array(batch.lats, dtype=np.float64)
        lons = np.array(batch.lons, dtype=np.float64)
        kernels.account_extras(
            t,
            x,
            account_slots,
            lats,
            lons,
            ok,
            extras.geo_last,
            extras.hours,
            extras.recent,
            extras.recent_n,
            out,
            _GEO,
            _HOUR_TYPICAL,
            _ROBUST,
            _QUARTILES,
        )
        self.processed += n
        applied = t[ok]
        if applied.size:
            if applied[0] < self.applied_until or bool(np.any(applied[1:] < applied[:-1])):
                self.in_order = False  # fed by hand out of order: only full copies are exact
            self.applied_until = max(self.applied_until, float(applied.max()))
        return out

    def _pair_times(
        self, name: str, accounts: np.ndarray, partners: np.ndarray, times: np.ndarray, apply: np.ndarray
    ) -> np.ndarray:
        """Previous sighting of each (account, partner) pair (NaN when new), recording this one."""
        seen = self.pairs[name]
        if isinstance(seen, dict):  # an engine assembled by hand (vigil.scoring.small_engine) starts with {}
            seen = self.pairs[name] = _pair_map(seen)
        previous = np.full(len(accounts), np.nan)
        kernels.pair_times(seen, accounts, partners, times, apply, _PAIR_SHIFT, previous)
        return previous

    # --- per-entity copies (the scorer's follower) -----------------------------------------

    def copy_entities(self, batch: Batch, *, into: FeatureEngine) -> None:
        """Replace `into`'s state by exactly the part of this state that `batch` reads.

        That is every entity of the batch's rows (slots of five kinds, account extras), their
        countries and each row's (account, partner) pairs. `into.compute(batch)` then returns the
        rows `self.compute(batch)` would, and this engine stays untouched: a row reads only its own
        entities and pairs (a device's distinct accounts come from the (account, device) pairs of
        the rows with that device, which are in the batch). Costs in proportion to the batch, not
        to the state, so a scorer can copy a few entities of a large state per request.
        """
        columns: tuple[Sequence[str | None], ...] = (
            batch.accounts,
            batch.cards,
            batch.merchants,
            batch.devices,
            batch.ips,
        )
        source_slots: dict[str, np.ndarray] = {}
        target_slots: dict[str, np.ndarray] = {}
        for (kind_name, source), keys in zip(self.kinds.items(), columns, strict=True):
            target = into.kinds[kind_name]
            names = [key for key in dict.fromkeys(keys) if key is not None]
            target.names = names
            target.slots = {None: -1, **{key: slot for slot, key in enumerate(names)}}
            target.ensure_capacity()
            rows = np.array([source.slots.get(key, -1) for key in names], dtype=np.int64)
            _copy_rows(source, target, rows, _Kind._FILL)
            if kind_name == "account":
                into.extras.resize(target.capacity)
                _copy_rows(self.extras, into.extras, rows, _AccountExtras._FILL)
            source_slots[kind_name] = np.array([source.slots.get(key, -1) for key in keys], dtype=np.int64)
            target_slots[kind_name] = np.array([target.slots[key] for key in keys], dtype=np.int64)
        into.countries = {country: index for index, country in enumerate(dict.fromkeys(batch.countries))}
        source_slots["country"] = np.array([self.countries.get(c, -1) for c in batch.countries], dtype=np.int64)
        target_slots["country"] = np.array([into.countries[c] for c in batch.countries], dtype=np.int64)
        accounts, into_accounts = source_slots["account"], target_slots["account"]
        for pair_name in _PAIR_NAMES:
            partners, into_partners = source_slots[pair_name], target_slots[pair_name]
            # -1 where the pair does not exist here (new account or partner) or at all (no device).
            pair_keys = np.where((accounts >= 0) & (partners >= 0), accounts * _PAIR_SHIFT + partners, -1)
            seen = self.pairs[pair_name]
            if isinstance(seen, dict):
                seen = self.pairs[pair_name] = _pair_map(seen)
            copied = into.pairs[pair_name]
            if isinstance(copied, dict):
                copied = into.pairs[pair_name] = _pair_map()
            else:
                _pair_clear(copied)
            _pair_copy(seen, copied, pair_keys, into_accounts * _PAIR_SHIFT + into_partners)
        into.processed = 0
        into.applied_until = -math.inf
        into.in_order = True

    # --- state size and snapshots ---------------------------------------------------------

    def entity_counts(self) -> dict[str, int]:
        return {name: len(kind) for name, kind in self.kinds.items()}

    def state_bytes(self) -> int:
        """Bytes held by the live state (arrays at capacity plus an estimate for the dicts)."""
        arrays = sum(kind.nbytes() for kind in self.kinds.values()) + self.extras.nbytes()
        slot_maps = sum(len(kind) for kind in self.kinds.values()) * 100
        pairs = sum(len(pairs) for pairs in self.pairs.values()) * _PAIR_BYTES
        return arrays + slot_maps + pairs

    def to_bytes(self) -> bytes:
        """The whole state, exactly (compressed numpy arrays plus the key maps)."""
        return self.copy_state().to_bytes()

    def mark(self) -> StateMark:
        return StateMark(time=self.applied_until, sizes=self.entity_counts())

    def copy_state(self, *, into: dict[str, np.ndarray] | None = None) -> StateCopy:
        """A consistent copy of the whole state, cheap enough to take between batches.

        Serialising and compressing the copy (`StateCopy.to_bytes`) is the slow part and
        can run on another thread while the engine goes on. `into` is a pool of buffers kept
        by the caller between copies: a fresh copy of a large state spends most of its time in
        page faults (1.6 s of CPU for 680 MB), a reused buffer only in memcpy. The previous copy
        taken into the same pool must no longer be in use.
        """
        header = self._header(delta=False)
        arrays: dict[str, np.ndarray] = {}
        for kind_name, kind in self.kinds.items():
            for name, array in kind.arrays().items():
                arrays[f"{kind_name}.{name}"] = _copy_into(into, f"{kind_name}.{name}", array)
            header[kind_name] = list(kind.names)
        extras = self.extras.arrays(len(self.kinds["account"]))
        arrays.update({name: _copy_into(into, name, array) for name, array in extras.items()})
        for pair_name in _PAIR_NAMES:
            keys, times = self.pair_arrays(pair_name)
            arrays[f"pairs.{pair_name}.keys"] = keys
            arrays[f"pairs.{pair_name}.times"] = times
        return StateCopy(header=header, arrays=arrays, mark=self.mark())

    def _header(self, *, delta: bool) -> dict[str, Any]:
        return {
            "format": _STATE_FORMAT,
            "feature_set_version": FEATURE_SET_VERSION,
            "delta": delta,
            "processed": self.processed,
            "applied_until": self.applied_until if math.isfinite(self.applied_until) else None,
            "countries": list(self.countries),
        }

    def _changed(self, mark: StateMark) -> dict[str, np.ndarray]:
        """Slots of each kind whose state changed since `mark`.

        No dirty bits needed: events are applied in release order, so everything applied after
        the mark is at or after `mark.time`, and every state change of an entity (windows,
        history, distinct rings, account extras) comes with an applied event of that entity,
        which sets its `last_time` to at least that time. Slots created since the mark by late
        events only hold the initial values, which a restore recreates.
        """
        return {name: np.flatnonzero(kind.last_time[: len(kind)] >= mark.time) for name, kind in self.kinds.items()}

    def changed_share(self, mark: StateMark) -> float:
        """Share of the entity rows that changed since `mark` (a delta's size relative to a full copy)."""
        total = sum(len(kind) for kind in self.kinds.values())
        if not self.in_order:
            return 1.0
        return sum(len(rows) for rows in self._changed(mark).values()) / total if total else 0.0

    def copy_delta(self, mark: StateMark) -> StateCopy:
        """What changed since the full copy that produced `mark`; `apply_delta` on that copy restores it.

        Costs in proportion to the entities (and pairs) touched since the mark, not to the state.
        """
        if not self.in_order:
            raise FeaturesError("events were applied out of time order: take a full copy")
        header = self._header(delta=True)
        header["base_sizes"] = mark.sizes
        header["base_time"] = mark.time if math.isfinite(mark.time) else None
        arrays: dict[str, np.ndarray] = {}
        changed = self._changed(mark)
        for kind_name, kind in self.kinds.items():
            rows = changed[kind_name]
            arrays[f"{kind_name}.rows"] = rows
            for name, array in kind.arrays().items():
                arrays[f"{kind_name}.{name}"] = array[rows]
            header[kind_name] = kind.names[mark.sizes[kind_name] :]
        rows = changed["account"]
        arrays.update({k: v[rows] for k, v in self.extras.arrays(len(self.kinds["account"])).items()})
        for pair_name in _PAIR_NAMES:
            keys, times = self.pair_arrays(pair_name)
            recent = times >= mark.time  # pair times are event times, applied in release order too
            arrays[f"pairs.{pair_name}.keys"] = keys[recent]
            arrays[f"pairs.{pair_name}.times"] = times[recent]
        return StateCopy(header=header, arrays=arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> FeatureEngine:
        """Rebuild an engine from a full copy's `to_bytes()` output."""
        header, arrays = _read_state(data)
        if header["delta"]:
            raise FeaturesError("a delta needs its base state: FeatureEngine.from_bytes(base).apply_delta(delta)")
        engine = cls()
        engine._restore_header(header)
        for kind_name, kind in engine.kinds.items():
            prefix = f"{kind_name}."
            kind.load(
                {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)},
                header[kind_name],
            )
        engine.extras.load(arrays, engine.kinds["account"].capacity)
        engine._load_pairs(arrays)
        return engine

    def apply_delta(self, data: bytes) -> None:
        """Bring an engine restored from a full copy up to a later delta against that copy."""
        header, arrays = _read_state(data)
        if not header["delta"] or header["base_sizes"] != self.entity_counts():
            raise FeaturesError("this delta was not taken against this feature state")
        self._restore_header(header)
        for kind_name, kind in self.kinds.items():
            for key in header[kind_name]:
                kind.slots[key] = len(kind.names)
                kind.names.append(key)
            kind.ensure_capacity()
            rows = arrays[f"{kind_name}.rows"]
            for name in _Kind._FILL:
                getattr(kind, name)[rows] = arrays[f"{kind_name}.{name}"]
        self.extras.resize(self.kinds["account"].capacity)
        rows = arrays["account.rows"]
        for name in _AccountExtras._FILL:
            getattr(self.extras, name)[rows] = arrays[f"extra_{name}"]
        self._load_pairs(arrays)

    def _restore_header(self, header: dict[str, Any]) -> None:
        self.processed = int(header["processed"])
        applied = header["applied_until"]
        self.applied_until = -math.inf if applied is None else float(applied)
        self.countries = {country: index for index, country in enumerate(header["countries"])}

    def _load_pairs(self, arrays: dict[str, np.ndarray]) -> None:
        for pair_name in _PAIR_NAMES:
            seen = self.pairs[pair_name]
            if isinstance(seen, dict):
                seen = self.pairs[pair_name] = _pair_map(seen)
            kernels.pair_load(seen, arrays[f"pairs.{pair_name}.keys"], arrays[f"pairs.{pair_name}.times"])

    def pair_arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(pair keys, last-seen times) of one pair map, as new arrays."""
        seen = self.pairs[name]
        if isinstance(seen, dict):
            return np.fromiter(seen, dtype=np.int64, count=len(seen)), np.fromiter(
                seen.values(), dtype=np.float64, count=len(seen)
            )
        keys, times = kernels.pair_arrays(seen)
        return keys, times
