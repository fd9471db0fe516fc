"""The labels store: bulk imports (chargeback files, ground truth) and what training may know.

Analysts' verdicts reach the `labels` table through the API (source `analyst`);
files arrive through `vigil labels import` (source `import`). Every row says who
(`author`), when (`labelled_at`) and why (`reason`). Imports are idempotent upserts
on (tenant, transaction, source): importing the same file twice changes nothing,
and a corrected file updates only the rows whose label or reason changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, literal_column, select
from sqlalchemy.dialects.postgresql import insert

from core import schema
from detectors.ml.dataset import CONFIRMED_FRAUD, EXPECTED, FALSE_POSITIVE, LABEL_VALUES, KnownLabel
from detectors.ml.errors import LabelFileError

# What label files say, mapped onto the three verdicts.
_ALIASES: Final[dict[str, str]] = {
    **{value: value for value in LABEL_VALUES},
    **dict.fromkeys(("fraud", "chargeback", "confirmed", "1", "true", "yes", "y", "positive"), CONFIRMED_FRAUD),
    **dict.fromkeys(("fp", "false-positive", "not_fraud", "not-fraud"), FALSE_POSITIVE),
    **dict.fromkeys(("legit", "legitimate", "genuine", "0", "false", "no", "n", "negative", "ok"), EXPECTED),
}
_CHUNK: Final = 2000  # rows per INSERT: 8 columns x 2000 stays far below PostgreSQL's 65,535 parameters
# xmax is 0 for a freshly inserted tuple and set for one rewritten by ON CONFLICT DO UPDATE.
_INSERTED: Final[Any] = literal_column("(xmax = 0)").label("inserted")
LABEL_FIELDS: Final = ("tenant_id", "transaction_id", "label", "reason", "event_time", "labelled_at", "author")


def normalise_label(value: object) -> str:
    """`confirmed_fraud`, `false_positive` or `expected` for any common spelling; `LabelFileError` otherwise."""
    text = str(value).strip().lower().replace(" ", "_")
    try:
        return _ALIASES[text]
    except KeyError:
        raise LabelFileError(f"{value!r} is not a label (use {', '.join(LABEL_VALUES)} or fraud/legit)") from None


@dataclass(frozen=True, slots=True)
class LabelRecord:
    """One label to store."""

    tenant_id: str
    transaction_id: str
    label: str
    reason: str | None = None
    event_time: datetime | None = None
    labelled_at: datetime | None = None  # None: the moment of import
    author: str | None = None  # None: the importing user


@dataclass(frozen=True, slots=True)
class ImportReport:
    rows: int
    inserted: int
    updated: int
    unchanged: int


def _timestamp(value: Any, *, column: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise LabelFileError(f"{column}: {value!r} is not an ISO 8601 time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def read_label_file(
    path: Path,
    *,
    mapping: Mapping[str, str] | None = None,
    tenant_id: str | None = None,
    label: str | None = None,
    require_tenant: bool = True,
) -> list[LabelRecord]:
    """Labels from a CSV or Parquet file.

    Columns (after `mapping` of Vigil name -> file column): transaction_id (required),
    tenant_id (or the `tenant_id` argument), label (or the `label` argument, e.g. a
    chargeback file of fraud only), and optional reason (else typology), event_time (else
    occurred_at), labelled_at and author. With `require_tenant=False` a missing tenant is
    "" (the label then matches its transaction id in any tenant: evaluation of external data).
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            table = pq.read_table(path)
        elif suffix == ".csv":
            # Everything as text: ids like 000123 must not become numbers.
            with path.open(encoding="utf-8") as handle:
                header = handle.readline().strip().split(",")
            types = dict.fromkeys(header, "string")
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
        else:
            raise LabelFileError(f"{path}: expected a .csv or .parquet file")
    except OSError as exc:
        raise LabelFileError(f"{path}: {exc}") from None
    mapping = dict(mapping or {})
    unknown = set(mapping) - {*LABEL_FIELDS, "typology", "occurred_at"}
    if unknown:
        raise LabelFileError(f"cannot map unknown field(s) {', '.join(sorted(unknown))}")

    def column(name: str) -> list[Any] | None:
        source = mapping.get(name, name)
        if source not in table.column_names:
            if name in mapping:
                raise LabelFileError(f"{path}: no column {source!r} (mapped to {name})")
            return None
        return list(table.column(source).to_pylist())

    ids = column("transaction_id")
    if ids is None:
        raise LabelFileError(f"{path}: no transaction_id column (map one with --map transaction_id=COLUMN)")
    size = len(ids)
    tenants = column("tenant_id")
    if tenants is None and tenant_id is None and require_tenant:
        raise LabelFileError(f"{path}: no tenant_id column; give --tenant")
    labels = column("label")
    if labels is None and label is None:
        raise LabelFileError(f"{path}: no label column; give --label (e.g. confirmed_fraud for chargebacks)")
    reasons = column("reason")
    typologies = column("typology") if reasons is None else None
    events = column("event_time") or column("occurred_at")
    known = column("labelled_at")
    authors = column("author")
    records = []
    for i in range(size):
        tx = ids[i]
        if tx is None or str(tx).strip() == "":
            raise LabelFileError(f"{path}: row {i + 2} has no transaction_id")
        reason = reasons[i] if reasons is not None and reasons[i] not in (None, "") else None
        if reason is None and typologies is not None and typologies[i]:
            reason = f"typology: {typologies[i]}"
        records.append(
            LabelRecord(
                tenant_id=str(tenants[i]) if tenants is not None and tenants[i] else str(tenant_id or ""),
                transaction_id=str(tx).strip(),
                label=normalise_label(labels[i] if labels is not None else label),
                reason=None if reason is None else str(reason),
                event_time=_timestamp(events[i], column="event_time") if events is not None else None,
                labelled_at=_timestamp(known[i], column="labelled_at") if known is not None else None,
                author=str(authors[i]) if authors is not None and authors[i] else None,
            )
        )
        if require_tenant and not records[-1].tenant_id:
            raise LabelFileError(f"{path}: row {i + 2} has no tenant_id")
    return records


def import_labels(
    *, engine: Engine, records: Sequence[LabelRecord], author: str, source: str = "import", now: datetime | None = None
) -> ImportReport:
    """Upsert labels on (tenant, transaction, source); rows whose label and reason are unchanged stay untouched."""
    moment = now or datetime.now(UTC)
    # Last row wins within a file; one statement cannot touch the same key twice.
    latest: dict[tuple[str, str], LabelRecord] = {}
    for record in records:
        latest[(record.tenant_id, record.transaction_id)] = record
    rows = [
        {
            "tenant_id": r.tenant_id,
            "transaction_id": r.transaction_id,
            "label": r.label,
            "source": source,
            "author": r.author or author,
            "reason": r.reason,
            "event_time": r.event_time,
            "labelled_at": r.labelled_at or moment,
        }
        for r in latest.values()
    ]
    rows.sort(key=lambda row: (row["tenant_id"], row["transaction_id"]))  # stable lock order
    table = schema.labels
    inserted = updated = 0
    with engine.begin() as connection:
        for start in range(0, len(rows), _CHUNK):
            values = insert(table).values(rows[start : start + _CHUNK])
            excluded = values.excluded
            statement = values.on_conflict_do_update(
                constraint="labels_tenant_transaction_source_key",
                set_={
                    "label": excluded.label,
                    "reason": excluded.reason,
                    "author": excluded.author,
                    "event_time": excluded.event_time,
                    "labelled_at": excluded.labelled_at,
                },
                where=(table.c.label.is_distinct_from(excluded.label))
                | (table.c.reason.is_distinct_from(excluded.reason)),
            ).returning(_INSERTED)
            for row in connection.execute(statement):
                if row.inserted:
                    inserted += 1
                else:
                    updated += 1
    return ImportReport(rows=len(rows), inserted=inserted, updated=updated, unchanged=len(rows) - inserted - updated)


def known_labels(*, engine: Engine, cutoff: datetime | None = None) -> list[KnownLabel]:
    """Every stored label recorded at or before `cutoff` (all when None)."""
    table = schema.labels
    query = select(table.c.tenant_id, table.c.transaction_id, table.c.label, table.c.labelled_at, table.c.source)
    if cutoff is not None:
        query = query.where(table.c.labelled_at <= cutoff)
    with engine.connect() as connection:
        return [
            KnownLabel(
                tenant_id=row.tenant_id,
                transaction_id=row.transaction_id,
                label=row.label,
                labelled_at=row.labelled_at,
                source=row.source,
            )
            for row in connection.execute(query)
        ]
