"""One error body for every 4xx/5xx: `{"error": {"code", "message", "details"}}`.

Routes raise `ApiError` subclasses; FastAPI's own validation errors, Starlette's
404/405 and unexpected exceptions are translated here so a client never has to
parse two shapes.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DataError, OperationalError, StatementError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from core.errors import VigilError

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    """Where and why, e.g. one invalid field."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int] | None = Field(None, description="Path to the offending field, when there is one.")
    message: str | None = Field(None, description="What is wrong there.")
    type: str | None = Field(None, description="Machine-readable kind of problem.")


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `not_found`, `validation_error`.")
    message: str = Field(description="One sentence for people.")
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorBody(BaseModel):
    """The body of every error response."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "validation_error",
                        "message": "the request is invalid",
                        "details": [{"loc": ["query", "limit"], "message": "must be <= 500", "type": "le"}],
                    }
                }
            ]
        }
    )

    error: ErrorInfo


class ApiError(VigilError):
    """Base of the errors the API raises on purpose; rendered as `ErrorBody`."""

    status_code: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or []
        self.headers = headers or {}


class BadRequestError(ApiError):
    status_code = 400
    code = "bad_request"


class UnauthorizedError(ApiError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str = "a valid bearer token is required", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        super().__init__(message, **kwargs)


class ForbiddenError(ApiError):
    status_code = 403
    code = "forbidden"


class NotFoundError(ApiError):
    status_code = 404
    code = "not_found"


class ConflictError(ApiError):
    status_code = 409
    code = "conflict"


class PayloadTooLargeError(ApiError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(ApiError):
    status_code = 415
    code = "unsupported_media_type"


class UnprocessableError(ApiError):
    status_code = 422
    code = "validation_error"


class RateLimitedError(ApiError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many requests; retry after {retry_after} s", headers={"Retry-After": str(retry_after)})


class UnavailableError(ApiError):
    status_code = 503
    code = "unavailable"


_STATUS_CODES: Final[dict[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def error_response(
    status_code: int,
    message: str,
    *,
    code: str | None = None,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON response in the one error shape."""
    body = {
        "error": {
            "code": code or _STATUS_CODES.get(status_code, "error"),
            "message": message,
            "details": details or [],
        }
    }
    return JSONResponse(body, status_code=status_code, headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for error in exc.errors():
        details.append(
            {
                "loc": [part if isinstance(part, int) else str(part) for part in error.get("loc", ())],
                "message": str(error.get("msg", "invalid")),
                "type": str(error.get("type", "invalid")),
            }
        )
    return details


_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> list[str]:
    """Every method the path supports, across all routes sharing it (RFC 9110 `Allow`)."""
    allowed = []
    for method in _METHODS:
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    if "GET" in allowed:
        allowed.append("HEAD")
    return allowed


def install_error_handlers(app: FastAPI) -> None:
    """Render every error as `ErrorBody`."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> Response:
        return error_response(exc.status_code, exc.message, code=exc.code, details=exc.details, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        return error_response(422, "the request is invalid", details=_validation_details(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(request))
            return error_response(405, f"{request.method} is not allowed here", headers=headers)
        if exc.status_code == 404:
            return error_response(404, "no such resource", headers=headers)
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_ERROR:
            # FastAPI says 400 for bodies that are not even text (e.g. invalid UTF-8); JSON that
            # does not parse is 422 `json_invalid` everywhere else, so keep one answer for both.
            return error_response(422, "the body is not valid JSON", code="json_invalid")
        return error_response(exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(StatementError)
    async def _database(_request: Request, exc: StatementError) -> Response:
        # Input the database refuses (NUL bytes, out-of-range values) is the client's error, not ours.
        if isinstance(exc, DataError) or isinstance(exc.orig, UnicodeError | ValueError | OverflowError):
            return error_response(422, "a value is not acceptable to the database", code="invalid_value")
        if isinstance(exc, OperationalError) and "statement timeout" in str(exc.orig):
            return error_response(
                503, "the query took too long; narrow the filters", code="query_timeout", headers=_RETRY
            )
        log.exception("database error")
        return error_response(503, "the database is unavailable", headers=_RETRY)

    @app.exception_handler(OverflowError)
    async def _overflow(_request: Request, _exc: OverflowError) -> Response:
        # Date arithmetic at the edges of the calendar (e.g. year 1 minus 30 days).
        return error_response(422, "a value is out of range", code="invalid_value")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc)
        return error_response(500, "internal error")


_RETRY: Final = {"Retry-After": "1"}
_FASTAPI_BODY_ERROR: Final = "There was an error parsing the body"


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error codes, all with `ErrorBody`."""
    descriptions = {
        400: "Bad request (e.g. an invalid cursor).",
        401: "Missing, expired or invalid bearer token.",
        403: "The token's role or tenants do not allow this.",
        404: "Not found (or not visible to this token).",
        409: "Conflicts with the current state.",
        413: "Request body too large.",
        415: "The body must be `application/json`.",
        422: "Invalid parameters or body; `details` lists each field.",
        429: "Rate limited; see `Retry-After`.",
        503: "A dependency is unavailable or not wired in this deployment.",
    }
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorBody, "description": descriptions[code]}
        if code in (429, 503):
            entry["headers"] = {
                "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
            }
        responses[code] = entry
    return responses
