"""The committed JSON Schema for producers matches the contract, and `vigil schema transaction` prints it."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from core.contracts import Transaction
from vigil.cli import cli

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "transaction.v1.json"


def test_the_committed_schema_is_the_contracts_schema() -> None:
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == Transaction.model_json_schema(), (
        "docs/schemas/transaction.v1.json drifted: run `vigil schema transaction > docs/schemas/transaction.v1.json`"
    )


def test_the_cli_prints_exactly_the_committed_file() -> None:
    result = CliRunner().invoke(cli, ["schema", "transaction"])
    assert result.exit_code == 0, result.output
    assert result.stdout == SCHEMA_FILE.read_text()


def test_the_schema_names_every_field_and_forbids_others() -> None:
    schema = Transaction.model_json_schema()
    assert set(schema["properties"]) == set(Transaction.model_fields)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {
        "transaction_id",
        "occurred_at",
        "tenant_id",
        "account_id",
        "merchant_id",
        "merchant_category",
        "amount",
        "currency",
        "channel",
        "country",
    }
