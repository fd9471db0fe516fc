"""`vigil replay` end to end on small files, snapshot choice, and the documented registry."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from features.codec import Tx, batch_of, decode_transaction
from features.engine import FeatureEngine
from features.errors import FeaturesError
from features.ordering import Sequencer
from features.registry import FEATURE_NAMES, FEATURES
from features.service import _encode_item, _pack, unpack_state
from features.store import KEEP_PER_OWNER, SnapshotInfo, SnapshotStore, choose_snapshot
from tests.features.generator import generate, to_csv_rows
from vigil.cli import cli

DOCS = Path(__file__).resolve().parents[2] / "docs" / "features.md"


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_replay_of_csv_and_parquet_agree_and_ignore_file_order(tmp_path: Path) -> None:
    transactions = generate(300, seed=21)
    rows = to_csv_rows(transactions)
    _write_csv(tmp_path / "in.csv", rows[::-1])  # reversed on purpose: replay sorts by event time
    table = pa.table(
        {
            **{key: [row[key] or None for row in rows] for key in rows[0] if key not in ("occurred_at", "lat", "lon")},
            "occurred_at": pa.array([tx.occurred_at for tx in transactions], type=pa.timestamp("us", tz="UTC")),
            "lat": [tx.lat for tx in transactions],
            "lon": [tx.lon for tx in transactions],
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")
    runner = CliRunner()
    for name in ("in.csv", "in.parquet"):
        result = runner.invoke(
            cli, ["replay", "--input", str(tmp_path / name), "--output", str(tmp_path / f"{name}.out.parquet")]
        )
        assert result.exit_code == 0, result.output
        assert "300 transactions" in result.output
    from_csv = pq.read_table(tmp_path / "in.csv.out.parquet").to_pylist()
    from_parquet = pq.read_table(tmp_path / "in.parquet.out.parquet").to_pylist()
    assert [r["transaction_id"] for r in from_csv] == [tx.transaction_id for tx in transactions]
    for a, b in zip(from_csv, from_parquet, strict=True):
        assert {n: a[n] for n in FEATURE_NAMES} == {n: b[n] for n in FEATURE_NAMES}
    assert from_csv[-1]["account_amount_history_count"] is not None


def test_replay_refuses_unknown_formats_and_missing_columns(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{}")
    _write_csv(tmp_path / "bad.csv", [{"transaction_id": "a", "amount": "1"}])
    runner = CliRunner()
    result = runner.invoke(
        cli, ["replay", "--input", str(tmp_path / "x.json"), "--output", str(tmp_path / "o.parquet")]
    )
    assert result.exit_code != 0 and "csv or .parquet" in result.output
    result = runner.invoke(
        cli, ["replay", "--input", str(tmp_path / "bad.csv"), "--output", str(tmp_path / "o.parquet")]
    )
    assert result.exit_code != 0 and "missing columns" in result.output


def _info(snapshot_id: int, owner: str, owned: tuple[int, ...], processed: int) -> SnapshotInfo:
    return SnapshotInfo(snapshot_id, owner, owned, processed, {})


def test_choose_snapshot_prefers_own_newest_then_least_advanced_previous_owner() -> None:
    snapshots = [  # newest first
        _info(9, "1/2", (1,), 900),
        _info(8, "0/2", (0, 2), 800),
        _info(5, "0/2", (0, 2), 500),
    ]
    assert choose_snapshot([], owner="0/1", owned=(0, 1, 2)) is None
    assert choose_snapshot(snapshots, owner="0/2", owned=(0, 2)) == snapshots[1]
    # Scaled from 2 replicas to 1: resume from the least advanced previous owner.
    assert choose_snapshot(snapshots, owner="0/1", owned=(0, 1, 2)) == snapshots[1]
    # A partition nobody ever snapshotted: start from the beginning.
    assert choose_snapshot(snapshots, owner="0/1", owned=(0, 1, 2, 3)) is None


@pytest.mark.parametrize("name", FEATURE_NAMES)
def test_every_feature_is_documented(name: str) -> None:
    text = DOCS.read_text()
    assert f"`{name}`" in text
    assert FEATURES[name].description in text


@pytest.mark.integration
def test_snapshot_store_keeps_the_full_states_its_deltas_need_and_restores_a_chain(db: Engine) -> None:
    store = SnapshotStore(db, source_topic=f"t{uuid.uuid4().hex[:8]}.tx.valid")
    transactions = generate(400, seed=31)
    decoded = [decode_transaction(tx.model_dump_json().encode()) for tx in transactions]
    engine = FeatureEngine()
    sequencer: Sequencer[Tx] = Sequencer(partitions=[0], allowed_lateness=10.0)

    def save(state: bytes) -> int:
        return store.save(owner="0/1", owned=(0,), processed=engine.processed, output_offsets={0: 1}, state=state)

    def ids() -> set[int]:
        return {info.snapshot_id for info in store.list()}

    chunks = [decoded[i : i + 50] for i in range(0, 400, 50)]
    engine.compute(batch_of(chunks[0], [True] * 50))
    full = engine.copy_state()
    assert full.mark is not None
    first = save(_pack(full, sequencer.state(_encode_item), base_id=None))
    deltas = []
    for chunk in chunks[1:5]:
        engine.compute(batch_of(chunk, [True] * 50))
        deltas.append(save(_pack(engine.copy_delta(full.mark), sequencer.state(_encode_item), base_id=first)))
    assert ids() == {first, *deltas[-KEEP_PER_OWNER:]}  # the base outlives the deltas pruned around it
    restored, _, mark = unpack_state(store.load_state(deltas[-1]), partitions=[0], load=store.load_state)
    assert mark == full.mark
    tail = batch_of(chunks[5], [True] * 50)
    assert np.array_equal(restored.compute(tail), engine.compute(tail), equal_nan=True)

    second_full = engine.copy_state()
    second = save(_pack(second_full, sequencer.state(_encode_item), base_id=None))
    assert ids() == {first, *deltas[-2:], second}  # newest three, and the base of the deltas among them
    assert second_full.mark is not None
    engine.compute(batch_of(chunks[6], [True] * 50))
    third = save(_pack(engine.copy_delta(second_full.mark), sequencer.state(_encode_item), base_id=second))
    assert ids() == {first, deltas[-1], second, third}
    engine.compute(batch_of(chunks[7], [True] * 50))
    fourth = save(_pack(engine.copy_delta(second_full.mark), sequencer.state(_encode_item), base_id=second))
    assert ids() == {second, third, fourth}  # the first full state is no longer needed
    with pytest.raises(FeaturesError):
        unpack_state(store.load_state(fourth), partitions=[0])  # a delta cannot be read without its base
