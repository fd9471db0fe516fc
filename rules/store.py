"""Rule storage: rules with immutable versions in PostgreSQL, every change in the audit log.

A rule row holds identity, tenant scope, the enabled switch and which version
is current; each change of content inserts a new `rule_versions` row and bumps
`current_version` in the same transaction. The database refuses edits to a
published version (migration 0005). Enabling and disabling flip the switch on
the rule and do not create a version.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, Engine, Row, and_, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.contracts import Severity
from core.schema import audit_log, rule_versions, rules
from rules.catalogue import Catalogue
from rules.checker import compile_expression
from rules.errors import InvalidRuleError, RuleExistsError, RuleNotFoundError, RuleVersionConflictError
from rules.model import ActiveRule, RuleDraft, RuleVersionView, RuleView

_OBJECT_TYPE = "rule"
_CONTENT = ("name", "description", "expression", "severity", "enabled")


def _draft(**fields: Any) -> RuleDraft:
    try:
        return RuleDraft.model_validate({"id": fields.pop("rule_id"), **fields})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'rule'}: {error['msg']}" for error in exc.errors()
        )
        raise InvalidRuleError(f"invalid rule: {problems}") from None


def _view_query() -> Any:
    return select(
        rules.c.rule_id,
        rules.c.tenant_id,
        rule_versions.c.name,
        rule_versions.c.description,
        rule_versions.c.expression,
        rule_versions.c.severity,
        rules.c.enabled,
        rules.c.current_version,
        rule_versions.c.author,
        rules.c.created_at,
        rules.c.updated_at,
    ).join(
        rule_versions,
        and_(rule_versions.c.rule_id == rules.c.rule_id, rule_versions.c.version == rules.c.current_version),
    )


def _view(row: Row[Any]) -> RuleView:
    return RuleView.model_validate(row._asdict())


def _audit(
    connection: Connection, *, actor: str, tenant_id: str | None, action: str, rule_id: str, details: dict[str, Any]
) -> None:
    connection.execute(
        insert(audit_log).values(
            actor=actor,
            tenant_id=tenant_id,
            action=action,
            object_type=_OBJECT_TYPE,
            object_id=rule_id,
            details=details,
        )
    )


def _current(connection: Connection, rule_id: str, *, lock: bool = False) -> RuleView:
    query = _view_query().where(rules.c.rule_id == rule_id)
    if lock:
        # Serialises concurrent publishers of one rule: versions stay gap-free and ordered.
        query = query.with_for_update(of=rules)
    row = connection.execute(query).first()
    if row is None:
        raise RuleNotFoundError(f"no rule {rule_id!r}")
    return _view(row)


def create_rule(
    *,
    engine: Engine,
    rule_id: str,
    name: str,
    expression: str,
    author: str,
    severity: Severity | str = Severity.WARNING,
    description: str = "",
    tenant_id: str | None = None,
    enabled: bool = True,
    catalogue: Catalogue | None = None,
) -> RuleView:
    """Create a rule with version 1; RuleSyntaxError if the expression is invalid, RuleExistsError if taken."""
    draft = _draft(
        rule_id=rule_id,
        name=name,
        expression=expression,
        severity=severity,
        description=description,
        tenant_id=tenant_id,
        enabled=enabled,
    )
    compile_expression(draft.expression, catalogue=catalogue)
    with engine.begin() as connection:
        created = connection.execute(
            pg_insert(rules)
            .values(
                rule_id=draft.rule_id,
                tenant_id=draft.tenant_id,
                name=draft.name,
                current_version=1,
                enabled=draft.enabled,
            )
            .on_conflict_do_nothing(index_elements=[rules.c.rule_id])
            .returning(rules.c.rule_id)
        ).first()
        if created is None:
            raise RuleExistsError(f"rule {draft.rule_id!r} already exists; publish a new version instead")
        connection.execute(
            insert(rule_versions).values(
                rule_id=draft.rule_id,
                version=1,
                name=draft.name,
                description=draft.description,
                expression=draft.expression,
                severity=draft.severity.value,
                enabled=draft.enabled,
                author=author,
            )
        )
        _audit(
            connection,
            actor=author,
            tenant_id=draft.tenant_id,
            action="rule.create",
            rule_id=draft.rule_id,
            details={"version": 1, **content_of(draft)},
        )
        return _current(connection, draft.rule_id)


def content_of(draft: RuleDraft | RuleView) -> dict[str, Any]:
    """The versioned content of a rule, comparable between drafts and stored rules."""
    return {
        "name": draft.name,
        "description": draft.description,
        "expression": draft.expression,
        "severity": Severity(draft.severity).value,
        "enabled": draft.enabled,
    }


def publish_version(
    *,
    engine: Engine,
    rule_id: str,
    author: str,
    expression: str | None = None,
    name: str | None = None,
    description: str | None = None,
    severity: Severity | str | None = None,
    enabled: bool | None = None,
    expected_version: int | None = None,
    catalogue: Catalogue | None = None,
) -> RuleView:
    """Publish a new immutable version with the given changes (others carried over).

    Returns the rule unchanged when nothing differs from the current version.
    `expected_version` guards against overwriting someone else's change.
    """
    with engine.begin() as connection:
        current = _current(connection, rule_id, lock=True)
        if expected_version is not None and expected_version != current.current_version:
            raise RuleVersionConflictError(
                f"rule {rule_id!r} is at version {current.current_version}, not {expected_version}; "
                "reload it and apply your change again"
            )
        draft = _draft(
            rule_id=rule_id,
            name=current.name if name is None else name,
            expression=current.expression if expression is None else expression,
            severity=current.severity if severity is None else severity,
            description=current.description if description is None else description,
            tenant_id=current.tenant_id,
            enabled=current.enabled if enabled is None else enabled,
        )
        before, after = content_of(current), content_of(draft)
        changed = sorted(key for key in _CONTENT if before[key] != after[key])
        if not changed:
            return current
        if "expression" in changed:
            compile_expression(draft.expression, catalogue=catalogue)
        version = current.current_version + 1
        connection.execute(
            insert(rule_versions).values(
                rule_id=rule_id,
                version=version,
                name=draft.name,
                description=draft.description,
                expression=draft.expression,
                severity=draft.severity.value,
                enabled=draft.enabled,
                author=author,
            )
        )
        connection.execute(
            update(rules)
            .where(rules.c.rule_id == rule_id)
            .values(current_version=version, name=draft.name, enabled=draft.enabled, updated_at=func.now())
        )
        _audit(
            connection,
            actor=author,
            tenant_id=current.tenant_id,
            action="rule.version",  # same action name as the API writes
            rule_id=rule_id,
            details={"version": version, "previous_version": current.current_version, "changed": changed, **after},
        )
        return _current(connection, rule_id)


def _set_enabled(*, engine: Engine, rule_id: str, actor: str, enabled: bool, reason: str | None) -> RuleView:
    with engine.begin() as connection:
        current = _current(connection, rule_id, lock=True)
        if current.enabled == enabled:
            return current
        connection.execute(
            update(rules).where(rules.c.rule_id == rule_id).values(enabled=enabled, updated_at=func.now())
        )
        _audit(
            connection,
            actor=actor,
            tenant_id=current.tenant_id,
            action="rule.enable" if enabled else "rule.disable",
            rule_id=rule_id,
            details={"version": current.current_version, "reason": reason or ""},
        )
        return _current(connection, rule_id)


def disable(*, engine: Engine, rule_id: str, actor: str, reason: str | None = None) -> RuleView:
    """Stop a rule from firing (no new version); idempotent."""
    return _set_enabled(engine=engine, rule_id=rule_id, actor=actor, enabled=False, reason=reason)


def enable(*, engine: Engine, rule_id: str, actor: str, reason: str | None = None) -> RuleView:
    """Let a disabled rule fire again with its current version; idempotent."""
    return _set_enabled(engine=engine, rule_id=rule_id, actor=actor, enabled=True, reason=reason)


def get_rule(*, engine: Engine, rule_id: str) -> RuleView:
    """The rule with its current version's content; RuleNotFoundError if missing."""
    with engine.connect() as connection:
        return _current(connection, rule_id)


def list_rules(*, engine: Engine, tenant_id: str | None = None, include_disabled: bool = True) -> list[RuleView]:
    """Rules ordered by id; with `tenant_id`, only that tenant's rules plus rules for every tenant."""
    query = _view_query().order_by(rules.c.rule_id)
    if tenant_id is not None:
        query = query.where(or_(rules.c.tenant_id.is_(None), rules.c.tenant_id == tenant_id))
    if not include_disabled:
        query = query.where(rules.c.enabled)
    with engine.connect() as connection:
        return [_view(row) for row in connection.execute(query)]


def list_versions(*, engine: Engine, rule_id: str) -> list[RuleVersionView]:
    """Every version of a rule, oldest first; RuleNotFoundError if the rule does not exist."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(rule_versions).where(rule_versions.c.rule_id == rule_id).order_by(rule_versions.c.version)
        ).all()
    if not rows:
        raise RuleNotFoundError(f"no rule {rule_id!r}")
    return [RuleVersionView.model_validate(row._asdict()) for row in rows]


def get_version(*, engine: Engine, rule_id: str, version: int) -> RuleVersionView:
    """One version of a rule; RuleNotFoundError if missing."""
    with engine.connect() as connection:
        row = connection.execute(
            select(rule_versions).where(rule_versions.c.rule_id == rule_id, rule_versions.c.version == version)
        ).first()
    if row is None:
        raise RuleNotFoundError(f"no version {version} of rule {rule_id!r}")
    return RuleVersionView.model_validate(row._asdict())


def load_active_rules(*, engine: Engine) -> list[ActiveRule]:
    """Every enabled rule's current version (what the detector evaluates), ordered by id."""
    query = (
        select(
            rules.c.rule_id,
            rule_versions.c.version,
            rule_versions.c.name,
            rule_versions.c.description,
            rule_versions.c.expression,
            rule_versions.c.severity,
            rules.c.tenant_id,
        )
        .join(
            rule_versions,
            and_(rule_versions.c.rule_id == rules.c.rule_id, rule_versions.c.version == rules.c.current_version),
        )
        .where(rules.c.enabled)
        .order_by(rules.c.rule_id)
    )
    with engine.connect() as connection:
        return [ActiveRule.model_validate(row._asdict()) for row in connection.execute(query)]


def rules_fingerprint(*, engine: Engine) -> str:
    """A digest of (rule, current version, enabled) for every rule: changes iff the active set may have.

    One small aggregate over the rules table, cheap enough to poll every few seconds.
    """
    query = text(
        "SELECT coalesce(string_agg(rule_id || ':' || current_version || ':' || enabled, ',' "
        "ORDER BY rule_id), '') FROM rules"
    )
    with engine.connect() as connection:
        digest = connection.execute(query).scalar_one()
    return hashlib.sha256(str(digest).encode()).hexdigest()
