"""Rule packs: YAML files of rule drafts, validated as a whole, seeded idempotently."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import ValidationError
from sqlalchemy import Engine

from rules.catalogue import Catalogue
from rules.checker import compile_expression
from rules.errors import PackError, RuleExistsError, RuleSyntaxError
from rules.model import ActiveRule, RuleDraft
from rules.store import content_of, create_rule, get_rule, publish_version

DEFAULT_PACK: Final = Path(__file__).with_name("packs") / "default.yaml"
SEED_AUTHOR: Final = "vigil-seed"


def parse_pack(text: str, *, origin: str = "pack", catalogue: Catalogue | None = None) -> list[RuleDraft]:
    """Rule drafts from pack YAML (`rules: [{id, name, expression, severity, ...}]`), all validated."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PackError(f"{origin}: not valid YAML: {exc}") from None
    if isinstance(document, dict) and "rules" in document:
        items = document["rules"]
    elif isinstance(document, dict) and "expression" in document:
        items = [document]  # a single rule file (what `vigil rules backtest --rule` reads)
    else:
        raise PackError(f"{origin}: expected a mapping with a 'rules' list, or one rule with an 'expression'")
    if not isinstance(items, list):
        raise PackError(f"{origin}: 'rules' must be a list")
    drafts: list[RuleDraft] = []
    seen: set[str] = set()
    for position, item in enumerate(items, start=1):
        label = f"{origin}: rule {position}" + (f" ({item.get('id')})" if isinstance(item, dict) else "")
        drafts.append(_parse_rule(item, label, catalogue))
        if drafts[-1].rule_id in seen:
            raise PackError(f"{label}: duplicate id {drafts[-1].rule_id!r}")
        seen.add(drafts[-1].rule_id)
    return drafts


def _parse_rule(item: Any, label: str, catalogue: Catalogue | None) -> RuleDraft:
    if not isinstance(item, dict):
        raise PackError(f"{label}: expected a mapping with id, name, expression")
    try:
        draft = RuleDraft.model_validate(item)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise PackError(f"{label}: {problems}") from None
    try:
        compile_expression(draft.expression, catalogue=catalogue)
    except RuleSyntaxError as exc:
        detail = "\n".join(str(error) for error in exc.errors)
        raise PackError(f"{label}: invalid expression:\n{detail}") from None
    return draft


def load_pack(path: Path = DEFAULT_PACK, *, catalogue: Catalogue | None = None) -> list[RuleDraft]:
    """Read and validate a pack file (the shipped default pack when no path is given)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PackError(f"cannot read rule pack {path}: {exc.strerror}") from None
    return parse_pack(text, origin=str(path), catalogue=catalogue)


@dataclass
class SeedReport:
    """What seeding did, by rule id."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # differs from the pack; left alone without --update
    edited: list[str] = field(default_factory=list)  # changed by someone else since seeded; kept without --force


def pack_rules(path: Path = DEFAULT_PACK, *, catalogue: Catalogue | None = None) -> list[ActiveRule]:
    """A pack's enabled rules as active version 1, without a database (tests, offline evaluation)."""
    return [
        ActiveRule(
            rule_id=draft.rule_id,
            version=1,
            name=draft.name,
            description=draft.description,
            expression=draft.expression,
            severity=draft.severity,
            tenant_id=draft.tenant_id,
        )
        for draft in load_pack(path, catalogue=catalogue)
        if draft.enabled
    ]


def seed_pack(
    *,
    engine: Engine,
    drafts: Sequence[RuleDraft],
    author: str = SEED_AUTHOR,
    update: bool = False,
    force: bool = False,
    catalogue: Catalogue | None = None,
) -> SeedReport:
    """Create the pack's missing rules; with `update`, publish a new version where content differs.

    Idempotent: a second run changes nothing. `update` brings rules the seeder wrote
    (current version by `author`) to the pack's content; a rule whose current version
    someone else wrote (an analyst tuned it) is kept unless `force` is also given.
    """
    report = SeedReport()
    for draft in drafts:
        try:
            create_rule(
                engine=engine,
                rule_id=draft.rule_id,
                name=draft.name,
                expression=draft.expression,
                severity=draft.severity,
                description=draft.description,
                tenant_id=draft.tenant_id,
                enabled=draft.enabled,
                author=author,
                catalogue=catalogue,
            )
            report.created.append(draft.rule_id)
            continue
        except RuleExistsError:
            pass
        current = get_rule(engine=engine, rule_id=draft.rule_id)
        if content_of(current) == content_of(draft):
            report.unchanged.append(draft.rule_id)
        elif not update:
            report.kept.append(draft.rule_id)
        elif current.author != author and not force:
            report.edited.append(draft.rule_id)
        else:
            publish_version(
                engine=engine,
                rule_id=draft.rule_id,
                author=author,
                expression=draft.expression,
                name=draft.name,
                description=draft.description,
                severity=draft.severity,
                enabled=draft.enabled,
                catalogue=catalogue,
            )
            report.updated.append(draft.rule_id)
    return report
