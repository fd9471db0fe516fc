"""File output: transactions as JSONL, CSV or Parquet (what `vigil replay` reads) and labels as CSV.

Every writer is deterministic: the same batches give byte-identical files.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Literal

import orjson

from core.contracts import TRANSACTION_FIELDS
from vigil.generator.errors import GeneratorConfigError
from vigil.generator.stream import GeneratedBatch, Label

FileFormat = Literal["jsonl", "csv", "parquet"]
FILE_COLUMNS: Final = TRANSACTION_FIELDS
LABEL_COLUMNS: Final = ("transaction_id", "tenant_id", "label", "typology", "occurred_at")
_SUFFIXES: Final[dict[str, FileFormat]] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
_ROW_GROUP: Final = 65_536


def format_for(path: Path, explicit: str | None = None) -> FileFormat:
    """The file format named explicitly, or implied by the file's suffix."""
    if explicit is not None:
        if explicit not in ("jsonl", "csv", "parquet"):
            raise GeneratorConfigError(f"unknown format {explicit!r}: use jsonl, csv or parquet")
        return explicit  # type: ignore[return-value]
    try:
        return _SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise GeneratorConfigError(f"{path}: use a .jsonl, .csv or .parquet file (or --format)") from None


def encode_json(record: dict[str, Any]) -> bytes:
    """One transaction as producers send it (compact JSON)."""
    return orjson.dumps(record)


def _row(record: dict[str, Any]) -> list[Any]:
    attributes = record.get("attributes")
    return [
        *(record.get(name) for name in FILE_COLUMNS[:-1]),
        orjson.dumps(attributes).decode() if attributes else None,
    ]


class TransactionFile:
    """Append batches to a JSONL, CSV or Parquet file; use as a context manager."""

    def __init__(self, path: Path, file_format: FileFormat) -> None:
        self.path = path
        self.format = file_format
        self.rows = 0
        self._handle: IO[bytes] | None = None
        self._csv: Any = None
        self._text: io.TextIOWrapper | None = None
        self._parquet: Any = None
        self._pending: list[dict[str, Any]] = []

    def __enter__(self) -> TransactionFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.format == "jsonl":
            self._handle = self.path.open("wb")
        elif self.format == "csv":
            self._text = self.path.open("w", encoding="utf-8", newline="")
            self._csv = csv.writer(self._text, lineterminator="\n")
            self._csv.writerow(FILE_COLUMNS)
        return self

    def send(self, records: Sequence[dict[str, Any]], labels: Sequence[Label]) -> None:
        """`Sink` interface: append transactions (labels go to a `LabelFile`, never here)."""
        self.write(GeneratedBatch(list(records), []))

    def write(self, batch: GeneratedBatch) -> None:
        records = batch.transactions
        self.rows += len(records)
        if self.format == "jsonl":
            assert self._handle is not None
            self._handle.write(b"".join(orjson.dumps(record) + b"\n" for record in records))
        elif self.format == "csv":
            self._csv.writerows(_row(record) for record in records)
        else:
            self._pending.extend(records)
            if len(self._pending) >= _ROW_GROUP:
                self._flush_parquet()

    def _flush_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._pending:
            return
        records, self._pending = self._pending, []
        columns: dict[str, Any] = {}
        for name in FILE_COLUMNS:
            values: list[Any]
            if name == "attributes":
                values = [orjson.dumps(r["attributes"]).decode() if r.get("attributes") else None for r in records]
            else:
                values = [r.get(name) for r in records]
            if name == "occurred_at":
                # Fixed-width "...T..:..:...mmmZ" text: parse as UTC without a time zone database lookup.
                columns[name] = (
                    pa.array([v[:-1] for v in values], pa.string())
                    .cast(pa.timestamp("ms"))
                    .cast(pa.timestamp("ms", tz="UTC"))
                )
            elif name in ("lat", "lon"):
                columns[name] = pa.array(values, pa.float64())
            else:
                columns[name] = pa.array(values, pa.string())
        table = pa.table(columns)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        self._parquet.write_table(table)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._text is not None:
            self._text.close()
        if self.format == "parquet":
            self._flush_parquet()
            if self._parquet is not None:
                self._parquet.close()


class LabelFile:
    """Ground-truth labels as CSV (transaction_id, tenant_id, label, typology, occurred_at)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._text: io.TextIOWrapper | None = None
        self._csv: Any = None

    def __enter__(self) -> LabelFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._text = self.path.open("w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._text, lineterminator="\n")
        self._csv.writerow(LABEL_COLUMNS)
        return self

    def write(self, labels: Iterable[Label]) -> None:
        rows = list(labels)
        self.rows += len(rows)
        self._csv.writerows(rows)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._text is not None:
            self._text.close()


def read_labels(path: Path) -> list[Label]:
    """Labels written by `LabelFile` (tests and evaluation read them back)."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        if tuple(header) != LABEL_COLUMNS:
            raise GeneratorConfigError(f"{path}: expected columns {', '.join(LABEL_COLUMNS)}")
        return [Label(*row) for row in reader]
