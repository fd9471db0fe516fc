"""Opaque keyset cursors and the paging parameters shared by every list endpoint.

A cursor is base64url(JSON) of the list it belongs to and the sort key of the
last row served. It carries positions, never permissions: the tenant scope is
re-applied on every request, so a cursor from another token reveals nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any, Final
from uuid import UUID

from fastapi import Query

from api.errors import BadRequestError

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 500
_MAX_CURSOR_CHARS: Final = 512

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Page size (at most {MAX_PAGE_SIZE}).")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=_MAX_CURSOR_CHARS,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Opaque `next_cursor` from the previous page; omit for the first page.",
    ),
]


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot put {type(value).__name__} in a cursor")


def encode_cursor(kind: str, values: list[Any]) -> str:
    raw = json.dumps([kind, values], default=_default, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, *, kind: str, arity: int) -> list[Any]:
    """The key values of a cursor made by `encode_cursor(kind, ...)`, or 400 `invalid_cursor`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        decoded = None
    if (
        not isinstance(decoded, list)
        or len(decoded) != 2
        or decoded[0] != kind
        or not isinstance(decoded[1], list)
        or len(decoded[1]) != arity
        or not all(isinstance(value, str | int | float) for value in decoded[1])
    ):
        raise BadRequestError("the cursor is not valid for this list", code="invalid_cursor")
    return list(decoded[1])


def cursor_datetime(value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise BadRequestError("the cursor is not valid for this list", code="invalid_cursor") from None
    if parsed.tzinfo is None:
        raise BadRequestError("the cursor is not valid for this list", code="invalid_cursor")
    return parsed


def cursor_uuid(value: Any) -> UUID:
    try:
        return UUID(str(value))
    except ValueError:
        raise BadRequestError("the cursor is not valid for this list", code="invalid_cursor") from None


def cursor_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequestError("the cursor is not valid for this list", code="invalid_cursor")
    return value


def cursor_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequestError("the cursor is not valid for this list", code="invalid_cursor")
    return float(value)
