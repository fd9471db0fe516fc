"""Ingestion: raw transactions from Kafka validated into the store and `tx.valid`, or dead-lettered.

Public surface:
- `run_ingest` / `IngestHandler`: the `vigil run ingest` service (exactly once across restarts).
- `parse_transaction`, `TimeWindow`, `Valid`, `Invalid`, `RejectReason`: validation and its verdicts.
- `TransactionStore`: idempotent batch writes of accepted transactions.
- `inspect_dead_letters`, `replay_dead_letters`, `DeadLetterRecord`: the DLQ tools.
- `transaction_json_schema`: the contract for producers.
"""

from ingestion.errors import DeadLetterError, FatalIngestionError, IngestionError, StoreConflictError
from ingestion.reasons import RejectReason
from ingestion.schema import transaction_json_schema
from ingestion.service import REPLAY_HEADER, IngestHandler, consumer_group, run_ingest
from ingestion.store import Outcome, TransactionStore
from ingestion.validate import Invalid, TimeWindow, Valid, encode_valid, parse_transaction

__all__ = [
    "REPLAY_HEADER",
    "DeadLetterError",
    "FatalIngestionError",
    "IngestHandler",
    "IngestionError",
    "Invalid",
    "Outcome",
    "RejectReason",
    "StoreConflictError",
    "TimeWindow",
    "TransactionStore",
    "Valid",
    "consumer_group",
    "encode_valid",
    "parse_transaction",
    "run_ingest",
    "transaction_json_schema",
]
