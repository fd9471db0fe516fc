"""Views of the auth endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TokenResponse(BaseModel):
    """An OAuth 2.0 access token response (RFC 6749 section 5.1)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"access_token": "eyJhbGciOiJSUzI1NiIs...", "token_type": "bearer", "expires_in": 900}]
        }
    )

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int = Field(description="Seconds until the token expires.")


class Jwk(BaseModel):
    model_config = ConfigDict(extra="allow")

    kty: str
    kid: str
    alg: str | None = None
    use: str | None = None
    n: str | None = None
    e: str | None = None


class Jwks(BaseModel):
    """Public keys of Vigil's issuer (empty in development, where a shared secret signs)."""

    keys: list[Jwk]


class Me(BaseModel):
    """The principal a token speaks for."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "principal_id": "alice",
                    "kind": "user",
                    "roles": ["analyst"],
                    "tenants": ["acme"],
                    "permissions": ["anomalies:read", "cases:read", "cases:write"],
                }
            ]
        }
    )

    principal_id: str
    kind: Literal["user", "client", "external"]
    roles: list[str]
    tenants: list[str]
    permissions: list[str]
