"""docs/rules.md must describe every field and function the checker accepts, and the default pack."""

from __future__ import annotations

from pathlib import Path

from rules import DEFAULT_PACK, load_pack
from rules.catalogue import TRANSACTION_FIELDS
from rules.checker import FUNCTIONS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "rules.md").read_text(encoding="utf-8")


def test_every_transaction_field_and_function_is_documented() -> None:
    missing = [spec.name for spec in TRANSACTION_FIELDS if f"`{spec.name}`" not in DOC]
    missing += [name for name in FUNCTIONS if f"`{name}(" not in DOC]
    assert not missing, f"undocumented in docs/rules.md: {missing}"


def test_default_pack_rules_are_described() -> None:
    for draft in load_pack(DEFAULT_PACK):
        assert draft.name.split()[0].lower() in DOC.lower(), draft.name
