"""Roles, permissions and the principal a request acts as.

The role -> permission table below is the single source of truth for access
control; docs/api.md shows it as a matrix and tests/api check every endpoint
against an independent copy of that matrix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from api.errors import ForbiddenError, UnprocessableError


class Role(StrEnum):
    ADMIN = "admin"
    ANALYST = "analyst"
    VIEWER = "viewer"
    INGEST = "ingest"


class Permission(StrEnum):
    READ_ANOMALIES = "anomalies:read"
    READ_CASES = "cases:read"
    WRITE_CASES = "cases:write"
    READ_AUDIT = "audit:read"
    READ_PRECISION = "precision:read"
    READ_TRANSACTIONS = "transactions:read"
    READ_STATS = "stats:read"
    READ_RULES = "rules:read"
    WRITE_RULES = "rules:write"
    READ_MODELS = "models:read"
    WRITE_MODELS = "models:write"
    SCORE = "score"
    INGEST = "transactions:write"
    READ_DECISIONS = "decisions:read"
    READ_ALERTS = "alerts:read"
    WRITE_SILENCES = "silences:write"
    READ_SYSTEM = "system:read"


_VIEW: Final = frozenset(
    {
        Permission.READ_ANOMALIES,
        Permission.READ_CASES,
        Permission.READ_PRECISION,
        Permission.READ_TRANSACTIONS,
        Permission.READ_STATS,
        Permission.READ_RULES,
        Permission.READ_MODELS,
        Permission.READ_DECISIONS,
        Permission.READ_ALERTS,
    }
)
_ANALYST: Final = _VIEW | {
    Permission.WRITE_CASES,
    Permission.READ_AUDIT,
    Permission.WRITE_RULES,
    Permission.SCORE,
    Permission.WRITE_SILENCES,
    Permission.READ_SYSTEM,
}
# Ingest clients are machines at a payment facility: they submit and read their own decisions,
# never analysts' cases, notes or labels (facility privacy).
_INGEST: Final = frozenset({Permission.INGEST, Permission.SCORE, Permission.READ_DECISIONS})

ROLE_PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    Role.ADMIN: frozenset(Permission),
    Role.ANALYST: frozenset(_ANALYST),
    Role.VIEWER: _VIEW,
    Role.INGEST: _INGEST,
}

PrincipalKind = Literal["user", "client", "external"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for: roles grant permissions, tenants bound the data."""

    principal_id: str
    kind: PrincipalKind
    roles: frozenset[Role]
    tenants: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return Role.ADMIN in self.roles

    @property
    def permissions(self) -> frozenset[Permission]:
        granted: set[Permission] = set()
        for role in self.roles:
            granted |= ROLE_PERMISSIONS[role]
        return frozenset(granted)

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def sees_tenant(self, tenant_id: str | None) -> bool:
        """Whether records of `tenant_id` are visible (None = global records: admins only)."""
        if self.is_admin:
            return True
        return tenant_id is not None and tenant_id in self.tenants

    def tenant_scope(self, requested: str | None = None) -> list[str] | None:
        """Tenants a query may read: None means every tenant (admins without a filter).

        Naming a tenant outside the token's tenants is refused, not silently emptied.
        """
        if requested is not None:
            if not self.sees_tenant(requested):
                raise ForbiddenError(f"this token has no access to tenant {requested!r}")
            return [requested]
        if self.is_admin:
            return None
        return sorted(self.tenants)

    def single_tenant(self, requested: str | None) -> str:
        """The tenant a write applies to: the named one, or the token's only tenant."""
        if requested is not None:
            if not self.sees_tenant(requested):
                raise ForbiddenError(f"this token has no access to tenant {requested!r}")
            return requested
        if len(self.tenants) == 1 and not self.is_admin:
            return next(iter(self.tenants))
        raise UnprocessableError(
            "tenant_id is required: this token is not limited to exactly one tenant",
            details=[{"loc": ["tenant_id"], "message": "field required", "type": "missing"}],
        )


def parse_roles(values: Iterable[str]) -> frozenset[Role]:
    """Known roles among `values` (unknown role names are ignored, never guessed)."""
    known = {role.value for role in Role}
    return frozenset(Role(value) for value in values if value in known)
