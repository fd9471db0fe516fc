"""Issue and verify JWT access tokens (python-jose).

Verification order: parse the header, pick the issuer by the (unverified) `iss`,
pick the key by `kid` within that issuer, require the header's `alg` to be one
the key is pinned to, then verify signature and claims with `exp`, `iss`, `aud`
and `sub` required and clock skew bounded by `jwt_leeway_seconds`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Final

from jose import jwt
from jose.exceptions import ExpiredSignatureError, JWTClaimsError, JWTError

from api.auth.errors import InvalidTokenError
from api.auth.keys import OidcKeys, VerificationKey, VigilKeys
from api.permissions import Principal, PrincipalKind, Role, parse_roles
from core.settings import Settings

_REQUIRED: Final = {
    "verify_signature": True,
    "verify_exp": True,
    "verify_nbf": True,
    "verify_iat": True,
    "verify_aud": True,
    "verify_iss": True,
    "require_exp": True,
    "require_iss": True,
    "require_aud": True,
    "require_sub": True,
}
_MAX_TOKEN_BYTES: Final = 8192
# Verifying an RS256 token costs ~0.3 ms of CPU per request, the largest share of the API's own work
# on `POST /v1/score`; a client reuses its token for many requests. A cached verdict never outlives
# the token's `exp`, and lives at most this long, so a key removed from the key set (rotation, a
# JWKS refresh) stops being honoured within it.
_VERIFIED_CACHE_SECONDS: Final = 60.0
_VERIFIED_CACHE_ENTRIES: Final = 4096


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """Claims of a token that passed every check, and which issuer made it."""

    issuer_kind: PrincipalKind  # "external" for OIDC tokens
    subject: str
    claims: dict[str, Any]


class TokenIssuer:
    """Mints Vigil access tokens for principals that authenticated with the token endpoint."""

    def __init__(self, settings: Settings, keys: VigilKeys) -> None:
        self._settings = settings
        self._keys = keys

    @property
    def ttl_seconds(self) -> int:
        return self._settings.jwt_ttl_seconds

    def issue(self, principal: Principal, *, ttl_seconds: int | None = None, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self._settings.jwt_issuer,
            "aud": self._settings.jwt_audience,
            "sub": principal.principal_id,
            "iat": issued,
            "nbf": issued,
            "exp": issued + (ttl_seconds if ttl_seconds is not None else self._settings.jwt_ttl_seconds),
            "jti": uuid.uuid4().hex,
            "kind": principal.kind,
            "roles": sorted(role.value for role in principal.roles),
            "tenants": sorted(principal.tenants),
        }
        signing = self._keys.signing
        return jwt.encode(claims, signing.key, algorithm=signing.algorithm, headers={"kid": signing.kid})


class TokenVerifier:
    """Verifies tokens from Vigil's issuer and, when configured, one external OIDC provider."""

    def __init__(self, settings: Settings, keys: VigilKeys, oidc: OidcKeys | None = None) -> None:
        self._settings = settings
        self._keys = keys
        self._oidc = oidc
        self._verified: dict[str, tuple[VerifiedToken, float]] = {}

    def verify(self, token: str) -> VerifiedToken:
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None:
            verified, good_until = cached
            if now < good_until:
                return verified
            self._verified.pop(token, None)
        verified = self._verify(token, now)
        if len(self._verified) >= _VERIFIED_CACHE_ENTRIES:
            self._verified.clear()  # rare (that many live tokens in a minute); cheaper than LRU upkeep
        # Until `exp` exactly: the leeway stays with the full check, so a cached verdict is never
        # more lenient than verifying again.
        self._verified[token] = (verified, min(float(verified.claims["exp"]), now + _VERIFIED_CACHE_SECONDS))
        return verified

    def _verify(self, token: str, now: float) -> VerifiedToken:
        if len(token) > _MAX_TOKEN_BYTES:
            raise InvalidTokenError("token too large")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.get_unverified_claims(token)
        except JWTError:
            raise InvalidTokenError("malformed token") from None
        kid = header.get("kid")
        algorithm = header.get("alg")
        if not isinstance(kid, str) or not isinstance(algorithm, str):
            raise InvalidTokenError("token header must name `kid` and `alg`")
        issuer = unverified.get("iss")
        settings = self._settings
        key: VerificationKey | None
        if issuer == settings.jwt_issuer:
            kind: PrincipalKind = "user"
            key = self._keys.get(kid)
            audience = settings.jwt_audience
        elif self._oidc is not None and settings.oidc_issuer is not None and issuer == settings.oidc_issuer:
            kind = "external"
            key = self._oidc.get(kid)
            audience = settings.oidc_audience or settings.jwt_audience
        else:
            raise InvalidTokenError("unknown or missing issuer")
        if key is None:
            raise InvalidTokenError("unknown signing key")
        if algorithm not in key.algorithms:
            raise InvalidTokenError("algorithm not allowed for this key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=audience,
                issuer=issuer,
                options={**_REQUIRED, "leeway": settings.jwt_leeway_seconds},
            )
        except ExpiredSignatureError:
            raise InvalidTokenError("token expired") from None
        except JWTClaimsError as exc:
            raise InvalidTokenError(f"invalid claims: {exc}") from None
        except JWTError:
            raise InvalidTokenError("invalid signature") from None
        issued_at = claims.get("iat")
        if isinstance(issued_at, int | float) and issued_at > now + settings.jwt_leeway_seconds:
            raise InvalidTokenError("token issued in the future")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidTokenError("token has no subject")
        if kind == "user":
            kind = "client" if claims.get("kind") == "client" else "user"
        return VerifiedToken(issuer_kind=kind, subject=subject, claims=claims)

    def external_principal(self, token: VerifiedToken) -> Principal:
        """Roles and tenants of an OIDC token, read from the configured claims."""
        settings = self._settings
        roles = parse_roles(_string_list(token.claims.get(settings.oidc_roles_claim)))
        tenants = frozenset(_string_list(token.claims.get(settings.oidc_tenants_claim)))
        return Principal(principal_id=f"oidc:{token.subject}", kind="external", roles=roles, tenants=tenants)


def _string_list(value: object) -> list[str]:
    # Providers send either a JSON list or an OAuth-style space-separated string.
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


__all__ = ["Role", "TokenIssuer", "TokenVerifier", "VerifiedToken"]
