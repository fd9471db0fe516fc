"""`POST /v1/auth/token` (password and client-credentials grants), `POST /v1/auth/refresh` and
`POST /v1/auth/logout` (the dashboard's rotating refresh cookie), the issuer's JWKS, and `GET /v1/auth/me`."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Cookie, Form, Request, Response

from api.auth.errors import InvalidTokenError
from api.auth.models import Jwks, Me, TokenResponse
from api.auth.service import authenticate
from api.auth.sessions import COOKIE_NAME, COOKIE_PATH, InvalidRefreshError, Session, end_session, rotate, start_session
from api.deps import Ctx, CurrentPrincipal, WriteDb
from api.errors import RateLimitedError, UnauthorizedError, error_responses

router = APIRouter(prefix="/v1/auth", tags=["auth"])

_Field = Annotated[str | None, Form(max_length=256, pattern=r"^[^\x00]*$")]


def _basic_client(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


@router.post(
    "/token",
    summary="Get an access token",
    response_model=TokenResponse,
    responses=error_responses(401, 422, 429),
    openapi_extra={"security": []},
)
def issue_token(
    request: Request,
    response: Response,
    ctx: Ctx,
    connection: WriteDb,
    grant_type: Annotated[Literal["password", "client_credentials"], Form()],
    username: _Field = None,
    password: _Field = None,
    client_id: _Field = None,
    client_secret: _Field = None,
    scope: _Field = None,
) -> TokenResponse:
    """OAuth 2.0 token endpoint (form-encoded).

    People use `grant_type=password` with `username` and `password`; API clients use
    `grant_type=client_credentials` with `client_id` and `client_secret` (or HTTP Basic).
    Failed logins answer 401 with code `invalid_grant` or `invalid_client`; attempts are
    limited per source address. A password login also sets the `vigil_refresh` cookie
    (httpOnly, SameSite=Strict, path `/v1/auth`) for `POST /v1/auth/refresh`.
    """
    source = request.client.host if request.client else "unknown"
    retry_after = ctx.login_limiter.take(source)
    if retry_after is not None:
        raise RateLimitedError(retry_after)
    del scope  # roles come from the principal record, not from the request
    if grant_type == "password":
        if not username or not password:
            raise UnauthorizedError("username and password are required", code="invalid_request")
        record = authenticate(connection=connection, principal_id=username, kind="user", secret=password)
        if record is None:
            raise UnauthorizedError("unknown user or wrong password", code="invalid_grant")
    else:
        basic = _basic_client(request)
        if basic is not None:
            client_id, client_secret = basic
        if not client_id or not client_secret:
            raise UnauthorizedError("client_id and client_secret are required", code="invalid_request")
        record = authenticate(connection=connection, principal_id=client_id, kind="client", secret=client_secret)
        if record is None:
            raise UnauthorizedError("unknown client or wrong secret", code="invalid_client")
    token = ctx.issuer.issue(record.as_principal())
    if grant_type == "password":
        session = start_session(connection=connection, record=record, ttl_seconds=ctx.settings.refresh_ttl_seconds)
        _set_cookie(response, ctx, session)
    return TokenResponse(access_token=token, expires_in=ctx.issuer.ttl_seconds)


def _set_cookie(response: Response, ctx: Ctx, session: Session) -> None:
    response.set_cookie(
        COOKIE_NAME,
        session.token,
        max_age=max(1, int((session.expires_at - datetime.now(UTC)).total_seconds())),
        path=COOKIE_PATH,
        secure=ctx.settings.refresh_cookie_secure,
        httponly=True,
        samesite="strict",
    )


_RefreshCookie = Annotated[
    str | None,
    # No length constraint: any value that is not a live token is simply unknown (401 on refresh).
    Cookie(alias=COOKIE_NAME, description="Set by a password login; rotated on every refresh."),
]


@router.post(
    "/refresh",
    summary="Exchange the refresh cookie for a new access token",
    response_model=TokenResponse,
    responses=error_responses(401, 429),
    openapi_extra={"security": []},
)
def refresh(request: Request, response: Response, ctx: Ctx, vigil_refresh: _RefreshCookie = None) -> TokenResponse:
    """For the dashboard: reads the httpOnly `vigil_refresh` cookie, answers a fresh access token
    and sets the cookie's successor (each refresh token works once). Presenting a refresh token
    that was already used ends every session of that login (reuse detection). 401 with code
    `invalid_refresh_token` when the cookie is absent, unknown, expired, revoked or reused."""
    source = request.client.host if request.client else "unknown"
    retry_after = ctx.login_limiter.take(f"refresh:{source}")
    if retry_after is not None:
        raise RateLimitedError(retry_after)
    failure: InvalidRefreshError | None = None
    # Own transaction: a detected reuse revokes the family and must be committed although we answer 401.
    with ctx.engine.begin() as connection:
        try:
            session = rotate(connection=connection, token=vigil_refresh)
        except InvalidRefreshError as exc:
            failure = exc
    if failure is not None:
        raise failure
    ctx.principals.forget(session.record.principal_id)
    _set_cookie(response, ctx, session)
    token = ctx.issuer.issue(session.record.as_principal())
    return TokenResponse(access_token=token, expires_in=ctx.issuer.ttl_seconds)


@router.post(
    "/logout",
    summary="End the dashboard session",
    status_code=204,
    responses=error_responses(429),
    openapi_extra={"security": []},
)
def logout(ctx: Ctx, connection: WriteDb, vigil_refresh: _RefreshCookie = None) -> Response:
    """Revokes the refresh cookie's whole login (every rotated successor) and clears the cookie.
    Access tokens already issued stay valid until they expire (at most `jwt_ttl_seconds`)."""
    end_session(connection=connection, token=vigil_refresh)
    response = Response(status_code=204)
    response.delete_cookie(
        COOKIE_NAME, path=COOKIE_PATH, secure=ctx.settings.refresh_cookie_secure, httponly=True, samesite="strict"
    )
    return response


@router.get(
    "/jwks",
    summary="Public keys of Vigil's token issuer",
    response_model=Jwks,
    openapi_extra={"security": []},
)
def jwks(ctx: Ctx) -> Jwks:
    """The JWKS other services use to verify Vigil tokens; keys rotate by `kid`."""
    return Jwks.model_validate(ctx.keys.jwks())


@router.get(
    "/me",
    summary="Who this token is",
    response_model=Me,
    responses=error_responses(401, 429),
)
def me(principal: CurrentPrincipal) -> Me:
    """The principal, roles, tenants and resulting permissions of the bearer token."""
    return Me(
        principal_id=principal.principal_id,
        kind=principal.kind,
        roles=sorted(role.value for role in principal.roles),
        tenants=sorted(principal.tenants),
        permissions=sorted(p.value for p in principal.permissions),
    )


__all__ = ["InvalidTokenError", "router"]
