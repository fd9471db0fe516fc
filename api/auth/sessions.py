"""Dashboard sessions: opaque refresh tokens that rotate on every use (OAuth 2.0 Security BCP 4.14).

A login starts a *family*. Each refresh marks the presented token used and issues its
successor in the same family. A used token presented again means it was copied: the
whole family is revoked, so both the thief and the user must log in again. Only a
SHA-256 of each token is stored. Expiry is absolute per family (set at login), so
refreshing never extends a session past `refresh_ttl_seconds`.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import Connection, delete, insert, select, update

from api.auth.service import PrincipalRecord, get_principal
from api.errors import UnauthorizedError
from core.schema import refresh_tokens

COOKIE_NAME: Final = "vigil_refresh"
COOKIE_PATH: Final = "/v1/auth"
_TOKEN_BYTES: Final = 32


class InvalidRefreshError(UnauthorizedError):
    """The refresh cookie is absent, unknown, expired, revoked or reused."""

    code = "invalid_refresh_token"


@dataclass(frozen=True, slots=True)
class Session:
    token: str  # the new opaque refresh token (cookie value)
    expires_at: datetime
    record: PrincipalRecord


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _insert(connection: Connection, *, family_id: uuid.UUID, principal_id: str, expires_at: datetime) -> str:
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    connection.execute(
        insert(refresh_tokens).values(
            token_hash=_hash(token), family_id=family_id, principal_id=principal_id, expires_at=expires_at
        )
    )
    return token


def start_session(
    *, connection: Connection, record: PrincipalRecord, ttl_seconds: int, now: datetime | None = None
) -> Session:
    """A new family for a fresh login; also prunes sessions that expired a day ago or more."""
    now = now or datetime.now(UTC)
    connection.execute(delete(refresh_tokens).where(refresh_tokens.c.expires_at < now - timedelta(days=1)))
    expires_at = now + timedelta(seconds=ttl_seconds)
    token = _insert(connection, family_id=uuid.uuid4(), principal_id=record.principal_id, expires_at=expires_at)
    return Session(token=token, expires_at=expires_at, record=record)


def _revoke_family(connection: Connection, family_id: uuid.UUID, now: datetime) -> None:
    connection.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def rotate(*, connection: Connection, token: str | None, now: datetime | None = None) -> Session:
    """Exchange a refresh token for its successor, or raise InvalidRefreshError (revoking on reuse).

    The caller must commit even when this raises: a detected reuse revokes the family,
    and that revocation has to stick.
    """
    if not token:
        raise InvalidRefreshError("no refresh token: log in again")
    now = now or datetime.now(UTC)
    row = connection.execute(
        select(refresh_tokens).where(refresh_tokens.c.token_hash == _hash(token)).with_for_update()
    ).first()
    if row is None:
        raise InvalidRefreshError("unknown refresh token: log in again")
    found = row._mapping
    if found["revoked_at"] is not None:
        raise InvalidRefreshError("this session was ended: log in again")
    if found["used_at"] is not None:
        # Someone presents a token that was already exchanged: one of the two copies is stolen.
        _revoke_family(connection, found["family_id"], now)
        raise InvalidRefreshError("refresh token reused: every session of this login was ended")
    if found["expires_at"] <= now:
        raise InvalidRefreshError("the session expired: log in again")
    record = get_principal(connection=connection, principal_id=found["principal_id"])
    if record is None or record.disabled:
        _revoke_family(connection, found["family_id"], now)
        raise InvalidRefreshError("the session's user is unknown or disabled")
    connection.execute(
        update(refresh_tokens).where(refresh_tokens.c.token_hash == found["token_hash"]).values(used_at=now)
    )
    successor = _insert(
        connection, family_id=found["family_id"], principal_id=record.principal_id, expires_at=found["expires_at"]
    )
    return Session(token=successor, expires_at=found["expires_at"], record=record)


def end_session(*, connection: Connection, token: str | None, now: datetime | None = None) -> bool:
    """Revoke the family of `token` (logout); False when there was nothing to end."""
    if not token:
        return False
    family = connection.execute(
        select(refresh_tokens.c.family_id).where(refresh_tokens.c.token_hash == _hash(token))
    ).scalar_one_or_none()
    if family is None:
        return False
    _revoke_family(connection, family, now or datetime.now(UTC))
    return True
