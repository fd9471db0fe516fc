"""Query parameter types shared by several routes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import Query
from pydantic import AwareDatetime, StringConstraints

from api.errors import UnprocessableError

ID_PATTERN: Final = r"^[A-Za-z0-9._:@-]+$"
# Free text may hold anything but NUL, which PostgreSQL cannot store.
TEXT_PATTERN: Final = r"^[^\x00]*$"

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=ID_PATTERN)]
FreeText = Annotated[str, StringConstraints(max_length=4000, pattern=TEXT_PATTERN)]

TenantQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        pattern=ID_PATTERN,
        description="Only this tenant (must be one of the token's tenants unless admin).",
    ),
]
FromQuery = Annotated[
    AwareDatetime | None,
    Query(alias="from", description="Inclusive lower bound of event time (ISO 8601 with offset)."),
]
ToQuery = Annotated[
    AwareDatetime | None, Query(alias="to", description="Exclusive upper bound of event time (ISO 8601 with offset).")
]
IdQuery = Annotated[str | None, Query(min_length=1, max_length=128, pattern=ID_PATTERN)]


def in_range(value: datetime) -> datetime:
    """`value` if PostgreSQL and date arithmetic can use it; calendar edges (year 1, 9999) answer 422."""
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise UnprocessableError("timestamp out of range", code="invalid_value") from None
    return value


def bounded(value: datetime | None) -> datetime | None:
    """`in_range` for optional values."""
    return None if value is None else in_range(value)
