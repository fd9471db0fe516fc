"""Errors of the auth package."""

from __future__ import annotations

from api.errors import ApiError, UnauthorizedError


class KeyConfigError(ApiError):
    """Signing or verification keys are misconfigured (raised at start-up)."""

    status_code = 500
    code = "key_config"


class InvalidTokenError(UnauthorizedError):
    """A bearer token failed verification; the message says why without echoing the token."""

    code = "invalid_token"
