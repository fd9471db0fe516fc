"""Offline replay: the same engine over a file of transactions (training, backtests, evaluation).

Rows are sorted by (event time, transaction_id), the order the online
sequencer releases them in, and fed to `FeatureEngine` in chunks; chunking does
not change results because the engine is sequential. Nothing is late offline.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.engine import Batch, FeatureEngine, entity_keys, epoch_seconds
from features.errors import FeaturesError
from features.registry import FEATURE_NAMES, FEATURE_SET_VERSION

CHUNK_ROWS: Final = 50_000
_REQUIRED: Final = ("transaction_id", "occurred_at", "account_id", "merchant_id", "amount", "country")
_TEXT_COLUMNS: Final = (
    "transaction_id",
    "occurred_at",
    "tenant_id",
    "account_id",
    "card_id",
    "merchant_id",
    "merchant_category",
    "amount",
    "currency",
    "channel",
    "country",
    "device_id",
    "ip",
)
_PASSTHROUGH: Final = ("transaction_id", "occurred_at", "tenant_id", "account_id", "merchant_id")


@dataclass(frozen=True, slots=True)
class ReplayReport:
    rows: int
    output: Path
    seconds: float


def read_transactions(path: Path) -> pa.Table:
    """A CSV or Parquet file of transactions as an Arrow table (CSV columns read as text)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        table = pq.read_table(path)
    elif suffix == ".csv":
        header = path.open(encoding="utf-8").readline().strip().split(",")
        types = {name: pa.string() for name in header if name in _TEXT_COLUMNS}
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
    else:
        raise FeaturesError(f"{path}: expected a .csv or .parquet file")
    missing = [name for name in _REQUIRED if name not in table.column_names]
    if missing:
        raise FeaturesError(f"{path}: missing columns {', '.join(missing)}")
    return table


def _times(column: pa.ChunkedArray) -> list[float]:
    if pa.types.is_timestamp(column.type):
        if column.type.tz is None:
            raise FeaturesError("occurred_at timestamps must carry a time zone")
        micros = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
        # Same arithmetic as the online path (exact integer microseconds, one division).
        return [us / 1_000_000 for us in micros]
    return [epoch_seconds(datetime.fromisoformat(str(v))) for v in column.to_pylist()]


def _amount(value: Any) -> float:
    if isinstance(value, Decimal | str):
        return float(value)
    return float(value)


def _optional_text(values: list[Any]) -> list[str | None]:
    return [None if v is None or v == "" else str(v) for v in values]


def _coordinates(table: pa.Table) -> tuple[list[float | None], list[float | None]]:
    if "lat" not in table.column_names or "lon" not in table.column_names:
        return [None] * table.num_rows, [None] * table.num_rows
    lats, lons = [], []
    for lat, lon in zip(table.column("lat").to_pylist(), table.column("lon").to_pylist(), strict=True):
        a = None if lat is None or lat == "" else float(lat)
        b = None if lon is None or lon == "" else float(lon)
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            a = b = None
        lats.append(a)
        lons.append(b)
    return lats, lons


def replay(
    *,
    input_path: Path,
    output_path: Path,
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[int], object] | None = None,
) -> ReplayReport:
    """Compute features for every transaction in `input_path`; write them to `output_path` (Parquet)."""
    import time

    started = time.perf_counter()
    table = read_transactions(input_path)
    times = _times(table.column("occurred_at"))
    ids = [str(v) for v in table.column("transaction_id").to_pylist()]
    order = sorted(range(table.num_rows), key=lambda i: (times[i], ids[i]))
    table = table.take(pa.array(order, type=pa.int64()))
    times = [times[i] for i in order]
    ids = [ids[i] for i in order]
    # Entities are each tenant's own, as online (`entity_key`); a file without tenants is one tenant's.
    tenants = (
        [str(v) for v in table.column("tenant_id").to_pylist()]
        if "tenant_id" in table.column_names
        else [""] * table.num_rows
    )
    accounts = entity_keys(tenants, [str(v) for v in table.column("account_id").to_pylist()])
    merchants = entity_keys(tenants, [str(v) for v in table.column("merchant_id").to_pylist()])
    countries = [str(v).upper() for v in table.column("country").to_pylist()]
    amounts = [_amount(v) for v in table.column("amount").to_pylist()]

    def optional(name: str) -> list[str | None]:
        if name not in table.column_names:
            return [None] * table.num_rows
        return _optional_text(table.column(name).to_pylist())

    cards, devices, ips = (entity_keys(tenants, optional(name)) for name in ("card_id", "device_id", "ip"))
    lats, lons = _coordinates(table)
    engine = FeatureEngine()
    schema = pa.schema(
        [(name, pa.string()) for name in _PASSTHROUGH if name in table.column_names]
        + [("event_time", pa.float64()), ("amount_value", pa.float64())]
        + [(name, pa.float64()) for name in FEATURE_NAMES]
        + [("late", pa.bool_()), ("feature_set_version", pa.int32())]
    )
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(output_path, schema) as writer:
        for start in range(0, table.num_rows, chunk_rows):
            stop = min(start + chunk_rows, table.num_rows)
            batch = Batch(
                times=times[start:stop],
                accounts=accounts[start:stop],
                cards=cards[start:stop],
                merchants=merchants[start:stop],
                devices=devices[start:stop],
                ips=ips[start:stop],
                countries=countries[start:stop],
                amounts=amounts[start:stop],
                lats=lats[start:stop],
                lons=lons[start:stop],
                apply=[True] * (stop - start),
            )
            rows = engine.compute(batch)
            columns: dict[str, Any] = {
                name: pa.array([str(v) for v in table.column(name).slice(start, stop - start).to_pylist()])
                for name in _PASSTHROUGH
                if name in table.column_names
            }
            columns["event_time"] = pa.array(batch.times, type=pa.float64())
            columns["amount_value"] = pa.array(batch.amounts, type=pa.float64())
            for index, name in enumerate(FEATURE_NAMES):
                values = rows[:, index]
                columns[name] = pa.array(values, mask=np.isnan(values), type=pa.float64())
            columns["late"] = pa.array([False] * (stop - start))
            columns["feature_set_version"] = pa.array([FEATURE_SET_VERSION] * (stop - start), type=pa.int32())
            writer.write_table(pa.table(columns, schema=schema))
            if progress is not None:
                progress(stop - start)
    return ReplayReport(rows=table.num_rows, output=output_path, seconds=time.perf_counter() - started)
