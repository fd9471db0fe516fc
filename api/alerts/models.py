"""Views of notifications and silences (tables owned by alerting/, semantics shared with it)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from api.common import TEXT_PATTERN, IsoDatetime

MatchOp = Literal["=", "!=", "=~", "!~"]


class NotificationView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "notification_id": 41,
                    "group_key": "critical/acme/merchant_id=m-981",
                    "receiver": "slack-critical",
                    "tenant_id": "acme",
                    "severity": "critical",
                    "status": "sent",
                    "attempts": 1,
                    "anomaly_count": 12,
                    "title": "12 critical anomalies at merchant m-981",
                    "last_error": None,
                    "created_at": "2026-11-24T10:15:30Z",
                    "last_attempt_at": "2026-11-24T10:15:31Z",
                    "sent_at": "2026-11-24T10:15:31Z",
                }
            ]
        }
    )

    notification_id: int
    group_key: str
    receiver: str
    tenant_id: str | None
    severity: str
    status: str
    attempts: int
    anomaly_count: int
    title: str
    last_error: str | None
    created_at: datetime
    last_attempt_at: datetime | None
    sent_at: datetime | None


class NotificationPage(BaseModel):
    data: list[NotificationView]
    next_cursor: str | None


class MatcherIn(BaseModel):
    """One label condition, Alertmanager style (`=~`/`!~` take a full-match regular expression)."""

    model_config = ConfigDict(extra="forbid")

    label: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    op: MatchOp = "="
    value: Annotated[str, StringConstraints(max_length=1000, pattern=TEXT_PATTERN)] = ""


class SilenceIn(BaseModel):
    """Mute alerts whose labels match every matcher, from `starts_at` (default now) to `ends_at`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "matchers": [{"label": "merchant_id", "op": "=", "value": "m-981"}],
                    "ends_at": "2026-11-24T18:00:00Z",
                    "comment": "Known promotion at this merchant today.",
                }
            ]
        },
    )

    tenant_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:@-]+$")] | None = (
        Field(None, description="Omit for the token's only tenant; admins omit it to silence every tenant.")
    )
    matchers: list[MatcherIn] = Field(min_length=1, max_length=20)
    starts_at: IsoDatetime | None = None
    ends_at: IsoDatetime
    comment: Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"^[^\x00]*\S[^\x00]*$")]

    @field_validator("matchers")
    @classmethod
    def _regexes_compile(cls, value: list[MatcherIn]) -> list[MatcherIn]:
        for matcher in value:
            if matcher.op in ("=~", "!~"):
                try:
                    re.compile(matcher.value)
                except re.error as exc:
                    raise ValueError(f"bad regular expression {matcher.value!r}: {exc}") from None
        return value


class SilenceView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "silence_id": "3d0b2a64-8a0e-4b59-a1f6-0f5a3c2d1e77",
                    "tenant_id": "acme",
                    "matchers": [{"label": "merchant_id", "op": "=", "value": "m-981"}],
                    "starts_at": "2026-11-24T10:00:00Z",
                    "ends_at": "2026-11-24T18:00:00Z",
                    "created_by": "alice",
                    "comment": "Known promotion at this merchant today.",
                    "created_at": "2026-11-24T10:00:00Z",
                    "expired_at": None,
                    "expired_by": None,
                    "active": True,
                }
            ]
        }
    )

    silence_id: UUID
    tenant_id: str | None
    matchers: list[dict[str, Any]]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime
    expired_at: datetime | None
    expired_by: str | None
    active: bool


class SilenceList(BaseModel):
    data: list[SilenceView]
