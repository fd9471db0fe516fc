"""Rules and immutable versions in the database (the rule engine only validates and backtests).

A new version is inserted and `rules.current_version`/`updated_at` bumped in one
transaction, so the detector's hot reload (polling `updated_at`) sees a whole change.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from api.audit import service as audit
from api.errors import ConflictError
from core.schema import rule_versions, rules


def _visible(tenants: Sequence[str] | None) -> Any:
    if tenants is None:
        return True
    return or_(rules.c.tenant_id.is_(None), rules.c.tenant_id.in_(list(tenants)))


def _joined() -> Any:
    return rules.join(
        rule_versions,
        and_(rule_versions.c.rule_id == rules.c.rule_id, rule_versions.c.version == rules.c.current_version),
    )


def _with_current(row: Any) -> dict[str, Any]:
    m = row._mapping
    return {
        "rule_id": m["rule_id"],
        "tenant_id": m["tenant_id"],
        "name": m["name"],
        "current_version": m["current_version"],
        "enabled": m["enabled"],
        "created_at": m["created_at"],
        "updated_at": m["updated_at"],
        "current": {
            "rule_id": m["rule_id"],
            "version": m["version"],
            "name": m["version_name"],
            "description": m["description"],
            "expression": m["expression"],
            "severity": m["severity"],
            "enabled": m["version_enabled"],
            "author": m["author"],
            "created_at": m["version_created_at"],
        },
    }


def _select() -> Any:
    v = rule_versions.c
    return select(
        rules,
        v.version,
        v.name.label("version_name"),
        v.description,
        v.expression,
        v.severity,
        v.enabled.label("version_enabled"),
        v.author,
        v.created_at.label("version_created_at"),
    ).select_from(_joined())


def list_rules(
    *, connection: Connection, tenants: Sequence[str] | None, tenant_id: str | None, enabled: bool | None
) -> list[dict[str, Any]]:
    query = _select().where(_visible(tenants))
    if tenant_id is not None:
        query = query.where(or_(rules.c.tenant_id.is_(None), rules.c.tenant_id == tenant_id))
    if enabled is not None:
        query = query.where(rules.c.enabled == enabled)
    return [_with_current(row) for row in connection.execute(query.order_by(rules.c.rule_id))]


def get_rule(
    *, connection: Connection, tenants: Sequence[str] | None, rule_id: str, for_update: bool = False
) -> dict[str, Any] | None:
    query = _select().where(rules.c.rule_id == rule_id, _visible(tenants))
    if for_update:
        query = query.with_for_update(of=rules)
    row = connection.execute(query).first()
    return None if row is None else _with_current(row)


def versions_of(*, connection: Connection, rule_id: str) -> list[dict[str, Any]]:
    query = select(rule_versions).where(rule_versions.c.rule_id == rule_id).order_by(rule_versions.c.version.desc())
    return [dict(row._mapping) for row in connection.execute(query)]


def create_rule(
    *,
    connection: Connection,
    rule_id: str | None,
    tenant_id: str | None,
    name: str,
    description: str,
    expression: str,
    severity: str,
    enabled: bool,
    author: str,
) -> str:
    rule_id = rule_id or f"r-{uuid.uuid4().hex[:12]}"
    created = connection.execute(
        insert(rules)
        .values(rule_id=rule_id, tenant_id=tenant_id, name=name, current_version=1, enabled=enabled)
        .on_conflict_do_nothing(index_elements=[rules.c.rule_id])
        .returning(rules.c.rule_id)
    ).first()
    if created is None:
        raise ConflictError(f"rule {rule_id!r} already exists")
    connection.execute(
        insert(rule_versions).values(
            rule_id=rule_id,
            version=1,
            name=name,
            description=description,
            expression=expression,
            severity=severity,
            enabled=enabled,
            author=author,
        )
    )
    audit.record(
        connection=connection,
        actor=author,
        tenant_id=tenant_id,
        action="rule.create",
        object_type="rule",
        object_id=rule_id,
        details={"version": 1, "expression": expression, "severity": severity, "enabled": enabled},
    )
    return rule_id


def publish_version(
    *,
    connection: Connection,
    current: dict[str, Any],
    name: str | None,
    description: str | None,
    expression: str,
    severity: str,
    enabled: bool | None,
    author: str,
) -> int:
    """Insert version current+1 (the row is locked by the caller) and make it current."""
    rule_id = current["rule_id"]
    version = int(current["current_version"]) + 1
    now_enabled = current["enabled"] if enabled is None else enabled
    new_name = name if name is not None else current["name"]
    connection.execute(
        insert(rule_versions).values(
            rule_id=rule_id,
            version=version,
            name=new_name,
            description=description if description is not None else current["current"]["description"],
            expression=expression,
            severity=severity,
            enabled=now_enabled,
            author=author,
        )
    )
    connection.execute(
        update(rules)
        .where(rules.c.rule_id == rule_id)
        .values(current_version=version, name=new_name, enabled=now_enabled, updated_at=func.now())
    )
    audit.record(
        connection=connection,
        actor=author,
        tenant_id=current["tenant_id"],
        action="rule.version",
        object_type="rule",
        object_id=rule_id,
        details={"version": version, "expression": expression, "severity": severity, "enabled": now_enabled},
    )
    return version


def set_enabled(*, connection: Connection, current: dict[str, Any], enabled: bool, actor: str) -> None:
    if current["enabled"] == enabled:
        return
    connection.execute(
        update(rules).where(rules.c.rule_id == current["rule_id"]).values(enabled=enabled, updated_at=func.now())
    )
    audit.record(
        connection=connection,
        actor=actor,
        tenant_id=current["tenant_id"],
        action="rule.enable" if enabled else "rule.disable",
        object_type="rule",
        object_id=current["rule_id"],
        details={"version": current["current_version"]},
    )
