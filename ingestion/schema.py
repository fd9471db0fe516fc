"""The transaction contract as JSON Schema, for producers (`vigil schema transaction`)."""

from __future__ import annotations

import json

from core.contracts import Transaction


def transaction_json_schema() -> str:
    """`Transaction.model_json_schema()` as stable, indented JSON text ending in a newline."""
    return json.dumps(Transaction.model_json_schema(), indent=2, ensure_ascii=False) + "\n"
