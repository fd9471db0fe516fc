"""Silences: create, list and expire, each change written to the audit log.

Keyword-only service functions over the `silences` table; the CLI uses them and
the API engineer's endpoints can too. Matching is Alertmanager's: every matcher
must match, and a tenant-scoped silence only covers that tenant's alerts.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import Connection, Engine, RowMapping, and_, insert, or_, select, update

from alerting.errors import SilenceError
from alerting.matchers import Matcher, all_match, coerce_matcher
from core.schema import audit_log, silences


class Silence(BaseModel):
    """A silence as stored (table `silences`)."""

    model_config = ConfigDict(frozen=True)

    silence_id: uuid.UUID
    tenant_id: str | None
    matchers: list[Matcher]
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    created_by: str
    comment: str
    created_at: AwareDatetime
    expired_at: AwareDatetime | None = None
    expired_by: str | None = None

    def active_at(self, now: datetime) -> bool:
        return self.expired_at is None and self.starts_at <= now < self.ends_at

    def mutes(self, labels: Mapping[str, str], *, now: datetime) -> bool:
        """True when this silence is active and covers an alert with these labels."""
        if not self.active_at(now):
            return False
        if self.tenant_id is not None and labels.get("tenant_id") != self.tenant_id:
            return False
        return all_match(self.matchers, labels)


def _from_row(row: RowMapping) -> Silence:
    return Silence.model_validate(dict(row))


def create_silence(
    *,
    engine: Engine,
    matchers: Sequence[Matcher | str | Mapping[str, str]],
    starts_at: datetime,
    ends_at: datetime,
    created_by: str,
    comment: str,
    now: datetime,
    tenant_id: str | None = None,
) -> Silence:
    """Store a silence and audit it; refuses an empty matcher list (it would mute everything)."""
    parsed = [coerce_matcher(m) for m in matchers]
    if not parsed:
        raise SilenceError("a silence needs at least one matcher")
    if ends_at <= starts_at:
        raise SilenceError("a silence must end after it starts")
    if ends_at <= now:
        raise SilenceError("a silence that ends in the past would silence nothing")
    if not created_by.strip() or not comment.strip():
        raise SilenceError("a silence needs an author and a comment")
    silence_id = uuid.uuid4()
    row = {
        "silence_id": silence_id,
        "tenant_id": tenant_id,
        "matchers": [m.model_dump() for m in parsed],
        "starts_at": starts_at,
        "ends_at": ends_at,
        "created_by": created_by,
        "comment": comment,
        "created_at": now,
    }
    with engine.begin() as connection:
        connection.execute(insert(silences).values(row))
        connection.execute(
            insert(audit_log).values(
                at=now,
                actor=created_by,
                tenant_id=tenant_id,
                action="silence.create",
                object_type="silence",
                object_id=str(silence_id),
                details={
                    "matchers": [str(m) for m in parsed],
                    "starts_at": starts_at.isoformat(),
                    "ends_at": ends_at.isoformat(),
                    "comment": comment,
                },
            )
        )
    return Silence.model_validate(row)


def expire_silence(
    *, engine: Engine, silence_id: uuid.UUID, expired_by: str, now: datetime, tenant_id: str | None = None
) -> Silence:
    """End a silence now and audit it; `tenant_id` restricts which silences the caller may touch."""
    condition = silences.c.silence_id == silence_id
    if tenant_id is not None:
        condition = and_(condition, silences.c.tenant_id == tenant_id)
    with engine.begin() as connection:
        row = connection.execute(select(silences).where(condition).with_for_update()).mappings().first()
        if row is None:
            raise SilenceError(f"no silence {silence_id}")
        if row["expired_at"] is not None or row["ends_at"] <= now:
            raise SilenceError(f"silence {silence_id} has already ended")
        updated = (
            connection.execute(
                update(silences)
                .where(silences.c.silence_id == silence_id)
                .values(expired_at=now, expired_by=expired_by)
                .returning(*silences.c)
            )
            .mappings()
            .one()
        )
        connection.execute(
            insert(audit_log).values(
                at=now,
                actor=expired_by,
                tenant_id=row["tenant_id"],
                action="silence.expire",
                object_type="silence",
                object_id=str(silence_id),
                details={"ends_at_was": row["ends_at"].isoformat()},
            )
        )
    return _from_row(updated)


def list_silences(
    *, engine: Engine, now: datetime, tenant_id: str | None = None, include_ended: bool = False
) -> list[Silence]:
    """Silences, newest first: active and pending ones, or every one with `include_ended`."""
    query = select(silences).order_by(silences.c.created_at.desc())
    if tenant_id is not None:
        query = query.where(or_(silences.c.tenant_id == tenant_id, silences.c.tenant_id.is_(None)))
    if not include_ended:
        query = query.where(silences.c.expired_at.is_(None), silences.c.ends_at > now)
    with engine.connect() as connection:
        return [_from_row(row) for row in connection.execute(query).mappings()]


def active_silences(connection: Connection, *, now: datetime) -> list[Silence]:
    """Silences in force at `now` (used at every flush)."""
    query = select(silences).where(
        silences.c.expired_at.is_(None), silences.c.starts_at <= now, silences.c.ends_at > now
    )
    return [_from_row(row) for row in connection.execute(query).mappings()]
