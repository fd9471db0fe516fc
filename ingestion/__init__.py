"""Ingestion: raw transactions from Kafka validated into the store and `tx.valid`, or dead-lettered.

Public surface:
- `run_ingest` / `IngestHandler`: the `vigil run ingest` service (exactly once across restarts).
- `parse_transaction`, `TimeWindow`, `Valid`, `Invalid`, `RejectReason`: validation and its verdicts.
- `TransactionStore`: idempotent batch writes of accepted transactions.
- `inspect_dead_letters`, `replay_dead_letters`, `DeadLetterRecord`, `ReplayReport`: the DLQ tools;
  `read_topic` reads a (transactional) topic to its end.
- `transaction_json_schema`: the contract for producers.
"""

from ingestion.dlq import DeadLetterRecord, ReplayReport, inspect_dead_letters, read_topic, replay_dead_letters
from ingestion.errors import DeadLetterError, FatalIngestionError, IngestionError, StoreConflictError
from ingestion.reasons import RejectReason
from ingestion.schema import transaction_json_schema
from ingestion.service import REPLAY_HEADER, IngestHandler, consumer_group, run_ingest
from ingestion.store import Outcome, TransactionStore
from ingestion.validate import Invalid, TimeWindow, Valid, encode_valid, parse_transaction

__all__ = [
    "REPLAY_HEADER",
    "DeadLetterError",
    "DeadLetterRecord",
    "FatalIngestionError",
    "IngestHandler",
    "IngestionError",
    "Invalid",
    "Outcome",
    "RejectReason",
    "ReplayReport",
    "StoreConflictError",
    "TimeWindow",
    "TransactionStore",
    "Valid",
    "consumer_group",
    "encode_valid",
    "inspect_dead_letters",
    "parse_transaction",
    "read_topic",
    "replay_dead_letters",
    "run_ingest",
    "transaction_json_schema",
]
