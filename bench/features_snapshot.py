"""What a full feature snapshot costs, piece by piece, and what other compression settings would cost.

Usage: .venv/bin/python -m bench.features_snapshot [--transactions 600000]

Builds the benchmark's warm state (100k accounts, 10k merchants; `--transactions` twice, two days
apart), then prints CPU seconds on one pinned core for: the copy into reused buffers (the stage's
pause), `StateCopy.to_bytes` (zstd level 1, what the writer thread does), and the same arrays under
other codecs and levels, with and without byte shuffling (the dtype-size byte planes first).
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import numpy as np
import pyarrow as pa

from bench._common import pin_to_one_core
from bench.features import START, compute_only, make_transactions
from features.engine import FeatureEngine, StateCopy

T = TypeVar("T")


def _cpu(work: Callable[[], T]) -> tuple[T, float]:
    started = time.process_time()
    result = work()
    return result, time.process_time() - started


def _compressed_size(copy: StateCopy, codec: pa.Codec, *, shuffle: bool) -> int:
    total = 0
    for array in copy.arrays.values():
        data = np.ascontiguousarray(array)
        if not data.nbytes:
            continue
        if shuffle and data.dtype.itemsize > 1:
            data = np.ascontiguousarray(data.view(np.uint8).reshape(-1, data.dtype.itemsize).T)
        total += len(codec.compress(data, asbytes=True))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=600_000)
    args = parser.parse_args()
    pin_to_one_core()
    engine = FeatureEngine()
    for seed, day in ((1, 0), (2, 2)):
        stream = make_transactions(
            args.transactions, accounts=100_000, merchants=10_000, seed=seed, start=START + timedelta(days=day)
        )
        compute_only(engine, stream, 5_000)
    gc.collect()
    gc.freeze()
    entities = sum(engine.entity_counts().values())
    pool: dict[str, np.ndarray] = {}
    engine.copy_state(into=pool)  # the stage keeps these buffers between snapshots
    copy, spent = _cpu(lambda: engine.copy_state(into=pool))
    print(
        f"{entities:,} entities, {args.transactions * 2:,} transactions applied; "
        f"copy into reused buffers: {spent:.2f} s CPU for {copy.raw_bytes() / 1e6:,.0f} MB of arrays "
        f"(load average {os.getloadavg()[0]:.1f})"
    )
    for nbytes, name, dtype in sorted(((a.nbytes, k, a.dtype) for k, a in copy.arrays.items()), reverse=True)[:6]:
        print(f"  {name}: {dtype}, {nbytes / 1e6:,.0f} MB")
    blob, spent = _cpu(copy.to_bytes)
    print(f"StateCopy.to_bytes (zstd level 1, as stored): {spent:.2f} s CPU -> {len(blob) / 1e6:,.1f} MB")
    for name, level in (("zstd", 1), ("zstd", -1), ("zstd", -5), ("zstd", 3), ("lz4", None)):
        codec = pa.Codec(name) if level is None else pa.Codec(name, compression_level=level)
        for shuffle in (False, True):
            size, spent = _cpu(lambda: _compressed_size(copy, codec, shuffle=shuffle))  # noqa: B023
            label = name if level is None else f"{name} level {level}"
            print(f"  {label}{', byte-shuffled' if shuffle else ''}: {spent:.2f} s CPU -> {size / 1e6:,.1f} MB")


if __name__ == "__main__":
    main()
