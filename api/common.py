"""Query parameter types shared by several routes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import Query, Response
from pydantic import AwareDatetime, BaseModel, BeforeValidator, StringConstraints

from api.errors import UnprocessableError

ID_PATTERN: Final = r"^[A-Za-z0-9._:@-]+$"
# Free text may hold anything but NUL, which PostgreSQL cannot store.
TEXT_PATTERN: Final = r"^[^\x00]*$"

_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]")


def _iso_only(value: Any) -> Any:
    # Pydantic would also read numbers as Unix timestamps; the documented format is ISO 8601 only.
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATETIME.match(value)):
        return value
    raise ValueError("expected an ISO 8601 date-time with a UTC offset, e.g. 2026-11-24T10:00:00Z")


IsoDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_only)]
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
    IsoDatetime | None,
    Query(alias="from", description="Inclusive lower bound of event time (ISO 8601 with offset)."),
]
ToQuery = Annotated[
    IsoDatetime | None, Query(alias="to", description="Exclusive upper bound of event time (ISO 8601 with offset).")
]
IdQuery = Annotated[str | None, Query(min_length=1, max_length=128, pattern=ID_PATTERN)]


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """Serialise an already validated view once, skipping FastAPI's re-validation (and its thread hop).

    Routes keep `response_model=` for the OpenAPI document; hot paths return this instead.
    """
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")


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
