"""Writes accepted transactions to the `transactions` table, once each.

One database transaction per batch:

1. take the ingestion advisory lock, so the duplicate check below and the insert are
   atomic with respect to other ingest replicas (the table is partitioned by time, so
   PostgreSQL cannot enforce uniqueness of `transaction_id` alone);
2. look up every candidate id;
3. COPY the new rows into a temporary table and `INSERT ... SELECT ... ON CONFLICT DO NOTHING`.

A row whose `source_ref` equals the candidate's Kafka coordinates was written by an earlier
attempt at this very record (the process died before its Kafka transaction committed): it is
reported as `REPLAYED` so the caller produces it again. Any other existing row makes the
candidate a `DUPLICATE`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple

import orjson
from sqlalchemy import Engine

from ingestion.errors import StoreConflictError
from ingestion.validate import Valid

# pg_advisory_xact_lock key shared by every writer of `transactions` ("vigil-tx" in ASCII).
INGEST_LOCK_KEY: Final = 0x7669_6769_6C2D_7478
REPLAY_MARK: Final = " replay-of "
SOURCE_REF_MAX: Final = 200
_COLUMNS: Final = (
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
    "lat",
    "lon",
    "attributes",
    "ingested_at",
    "source_ref",
)
_COLUMN_LIST: Final = ", ".join(_COLUMNS)
_CREATE_STAGE: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS ingest_stage (LIKE transactions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_LOOKUP: Final = "SELECT transaction_id, source_ref, ingested_at FROM transactions WHERE transaction_id = ANY(%s)"
_INSERT: Final = (
    f"INSERT INTO transactions ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM ingest_stage "
    "ON CONFLICT DO NOTHING RETURNING transaction_id"
)


class Outcome(enum.Enum):
    INSERTED = "inserted"  # new row: produce it
    REPLAYED = "replayed"  # this record wrote the row before a crash: produce it again
    SKIPPED = "skipped"  # a re-submission of the same dead letter already ingested: nothing to do
    DUPLICATE = "duplicate"  # another record owns this id: dead-letter


class Candidate(NamedTuple):
    """A valid transaction and the Kafka coordinates of the record that brought it."""

    valid: Valid
    source_ref: str


class Decision(NamedTuple):
    outcome: Outcome
    ingested_at: datetime  # of the stored row (the original one for REPLAYED)
    detail: str = ""


def source_ref(topic: str, partition: int, offset: int, *, replay_of: str | None = None) -> str:
    """`topic/partition/offset`, plus the dead letter it re-submits, if any."""
    ref = f"{topic}/{partition}/{offset}"
    if replay_of is not None:
        ref = f"{ref}{REPLAY_MARK}{replay_of}"
    return ref[:SOURCE_REF_MAX]  # the column's width; a header from outside must not fail the batch


def _replay_of(ref: str | None) -> str | None:
    if ref is None or REPLAY_MARK not in ref:
        return None
    return ref.split(REPLAY_MARK, 1)[1]


class TransactionStore:
    """Idempotent batch writes of accepted transactions (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def write(self, candidates: Sequence[Candidate], *, ingested_at: datetime) -> list[Decision]:
        """Insert what is new; one decision per candidate, in order. Durable when it returns."""
        if not candidates:
            return []
        connection = self._engine.raw_connection()
        try:
            pg: Any = connection.driver_connection
            try:
                decisions = self._write(pg, candidates, ingested_at)
                pg.commit()
            except BaseException:
                pg.rollback()
                raise
        finally:
            connection.close()
        return decisions

    def _write(self, pg: Any, candidates: Sequence[Candidate], ingested_at: datetime) -> list[Decision]:
        with pg.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (INGEST_LOCK_KEY,))
            ids = list({candidate.valid.transaction_id for candidate in candidates})
            cursor.execute(_LOOKUP, (ids,))
            existing: dict[str, tuple[str | None, datetime]] = {row[0]: (row[1], row[2]) for row in cursor.fetchall()}
            decisions: list[Decision] = []
            claimed: dict[str, str] = {}  # ids taken by an earlier record of this batch
            rows: list[tuple[Any, ...]] = []
            for candidate in candidates:
                valid = candidate.valid
                transaction_id = valid.transaction_id
                if transaction_id in existing:
                    owner, stored_at = existing[transaction_id]
                    decisions.append(self._against_existing(candidate, owner, stored_at))
                    continue
                if transaction_id in claimed:
                    decisions.append(self._against_existing(candidate, claimed[transaction_id], ingested_at))
                    continue
                claimed[transaction_id] = candidate.source_ref
                fields = valid.fields
                rows.append(
                    (
                        transaction_id,
                        valid.occurred_at,
                        fields["tenant_id"],
                        fields["account_id"],
                        fields["card_id"],
                        fields["merchant_id"],
                        fields["merchant_category"],
                        fields["amount"],
                        fields["currency"],
                        fields["channel"],
                        fields["country"],
                        fields["device_id"],
                        fields["ip"],
                        fields["lat"],
                        fields["lon"],
                        orjson.dumps(fields["attributes"]).decode(),
                        ingested_at,
                        candidate.source_ref,
                    )
                )
                decisions.append(Decision(Outcome.INSERTED, ingested_at))
            if rows:
                cursor.execute(_CREATE_STAGE)
                with cursor.copy(f"COPY ingest_stage ({_COLUMN_LIST}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                cursor.execute(_INSERT)
                inserted = len(cursor.fetchall())
                if inserted != len(rows):
                    # Impossible under the lock unless someone writes without it: retry the batch.
                    raise StoreConflictError(f"expected to insert {len(rows)} rows, inserted {inserted}")
        return decisions

    @staticmethod
    def _against_existing(candidate: Candidate, owner: str | None, stored_at: datetime) -> Decision:
        if owner == candidate.source_ref:
            return Decision(Outcome.REPLAYED, stored_at)
        replay_of = _replay_of(candidate.source_ref)
        if replay_of is not None and replay_of == _replay_of(owner):
            return Decision(Outcome.SKIPPED, stored_at, f"dead letter {replay_of} was already re-ingested")
        return Decision(Outcome.DUPLICATE, stored_at, f"transaction_id already ingested from {owner or 'unknown'}")
