"""Users and API clients (table `principals`): create, list, disable, authenticate."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert

from api.audit import service as audit
from api.auth.passwords import hash_secret, needs_rehash, verify_secret
from api.errors import ConflictError, NotFoundError, UnprocessableError
from api.permissions import Principal, PrincipalKind, Role, parse_roles
from core.schema import principals

MIN_PASSWORD_LENGTH = 12


@dataclass(frozen=True, slots=True)
class PrincipalRecord:
    principal_id: str
    kind: PrincipalKind
    roles: frozenset[Role]
    tenants: frozenset[str]
    disabled: bool
    created_at: datetime | None

    def as_principal(self) -> Principal:
        return Principal(principal_id=self.principal_id, kind=self.kind, roles=self.roles, tenants=self.tenants)


def _record(row: object) -> PrincipalRecord:
    mapping = row._mapping  # type: ignore[attr-defined]
    return PrincipalRecord(
        principal_id=mapping["principal_id"],
        kind="client" if mapping["kind"] == "client" else "user",
        roles=parse_roles(mapping["roles"]),
        tenants=frozenset(mapping["tenants"]),
        disabled=bool(mapping["disabled"]),
        created_at=mapping["created_at"],
    )


def create_principal(
    *,
    connection: Connection,
    principal_id: str,
    kind: PrincipalKind,
    secret: str,
    roles: Iterable[Role],
    tenants: Iterable[str],
    actor: str,
) -> PrincipalRecord:
    """Create a user (password) or client (secret); refuses duplicates and weak passwords."""
    roles = frozenset(roles)
    tenants = frozenset(tenants)
    if kind not in ("user", "client"):
        raise UnprocessableError("kind must be user or client")
    if not roles:
        raise UnprocessableError("at least one role is required")
    if Role.ADMIN not in roles and not tenants:
        raise UnprocessableError("non-admin principals need at least one tenant")
    if len(secret) < MIN_PASSWORD_LENGTH:
        raise UnprocessableError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    inserted = connection.execute(
        insert(principals)
        .values(
            principal_id=principal_id,
            kind=kind,
            secret_hash=hash_secret(secret),
            roles=sorted(role.value for role in roles),
            tenants=sorted(tenants),
        )
        .on_conflict_do_nothing(index_elements=[principals.c.principal_id])
        .returning(principals)
    ).first()
    if inserted is None:
        raise ConflictError(f"principal {principal_id!r} already exists")
    audit.record(
        connection=connection,
        actor=actor,
        tenant_id=None,
        action=f"{kind}.create",
        object_type="principal",
        object_id=principal_id,
        details={"roles": sorted(r.value for r in roles), "tenants": sorted(tenants)},
    )
    return _record(inserted)


def get_principal(*, connection: Connection, principal_id: str) -> PrincipalRecord | None:
    row = connection.execute(select(principals).where(principals.c.principal_id == principal_id)).first()
    return None if row is None else _record(row)


def list_principals(*, connection: Connection, kind: PrincipalKind | None = None) -> list[PrincipalRecord]:
    query = select(principals).order_by(principals.c.principal_id)
    if kind is not None:
        query = query.where(principals.c.kind == kind)
    return [_record(row) for row in connection.execute(query)]


def set_disabled(*, connection: Connection, principal_id: str, disabled: bool, actor: str) -> PrincipalRecord:
    row = connection.execute(
        update(principals)
        .where(principals.c.principal_id == principal_id)
        .values(disabled=disabled)
        .returning(principals)
    ).first()
    if row is None:
        raise NotFoundError(f"no principal {principal_id!r}")
    record = _record(row)
    audit.record(
        connection=connection,
        actor=actor,
        tenant_id=None,
        action=f"{record.kind}.{'disable' if disabled else 'enable'}",
        object_type="principal",
        object_id=principal_id,
    )
    return record


def authenticate(
    *, connection: Connection, principal_id: str, kind: PrincipalKind, secret: str
) -> PrincipalRecord | None:
    """The enabled principal of `kind` whose secret matches, else None (same cost either way)."""
    row = connection.execute(select(principals).where(principals.c.principal_id == principal_id)).first()
    stored = row._mapping["secret_hash"] if row is not None else None
    if not verify_secret(stored, secret) or row is None:
        return None
    record = _record(row)
    if record.disabled or record.kind != kind:
        return None
    if stored is not None and needs_rehash(stored):
        connection.execute(
            update(principals).where(principals.c.principal_id == principal_id).values(secret_hash=hash_secret(secret))
        )
    return record
