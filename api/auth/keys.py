"""Signing and verification keys: Vigil's own (HS256 in development, RS256 otherwise) and OIDC JWKS.

Every key carries the one algorithm it may be used with. A token is verified
only with the key its `kid` names and only under that key's algorithm, so
`alg: none` or an HS256 token "signed" with an RSA public key can never pass.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from api.auth.errors import KeyConfigError
from core.settings import Settings

log = logging.getLogger(__name__)

_ALGORITHMS_BY_KTY: Final[dict[str, frozenset[str]]] = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES384", "ES512"}),
}
# Refetch a provider's JWKS for an unknown `kid` at most this often: a stream of forged kids
# must not turn into a stream of requests to the identity provider.
_MIN_REFETCH_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True)
class VerificationKey:
    kid: str
    algorithms: frozenset[str]  # the only algorithms a token verified with this key may declare
    key: Any = field(repr=False)  # PEM text, shared secret or JWK dict, as python-jose takes it


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    algorithm: str
    key: str = field(repr=False)


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def rsa_public_jwk(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    """The public JWK of an RSA key with its RFC 7638 thumbprint as `kid`."""
    numbers = public_key.public_numbers()
    members = {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
    return {**members, "kid": kid, "alg": "RS256", "use": "sig"}


def _public_pem(public_key: rsa.RSAPublicKey) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _load_public(path: Path) -> rsa.RSAPublicKey:
    data = path.read_bytes()
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        key = serialization.load_pem_private_key(data, password=None).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyConfigError(f"{path}: only RSA keys are supported")
    return key


class VigilKeys:
    """The keys of Vigil's own issuer: one signing key, any number of verification keys."""

    def __init__(self, settings: Settings) -> None:
        self._jwks: list[dict[str, str]] = []
        self.verification: dict[str, VerificationKey] = {}
        if settings.jwt_private_key_file is not None:
            try:
                private = serialization.load_pem_private_key(settings.jwt_private_key_file.read_bytes(), password=None)
            except (OSError, ValueError) as exc:
                raise KeyConfigError(f"VIGIL_JWT_PRIVATE_KEY_FILE: cannot load an RSA key: {exc}") from None
            if not isinstance(private, rsa.RSAPrivateKey):
                raise KeyConfigError("VIGIL_JWT_PRIVATE_KEY_FILE: only RSA private keys are supported")
            if private.key_size < 2048:
                raise KeyConfigError("VIGIL_JWT_PRIVATE_KEY_FILE: RSA keys must have at least 2048 bits")
            pem = private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
            jwk = rsa_public_jwk(private.public_key())
            self.signing = SigningKey(kid=jwk["kid"], algorithm="RS256", key=pem)
            self._add_public(private.public_key())
            for path in settings.jwt_previous_public_key_files:
                try:
                    self._add_public(_load_public(path))
                except (OSError, ValueError) as exc:
                    raise KeyConfigError(f"VIGIL_JWT_PREVIOUS_PUBLIC_KEY_FILES: {path}: {exc}") from None
        else:
            secret = settings.jwt_secret.get_secret_value()
            # The kid names the secret without revealing it (a keyed label, not the secret's hash).
            label = hashlib.sha256(b"vigil-kid\x00" + secret.encode()).hexdigest()[:16]
            self.signing = SigningKey(kid=f"hs-{label}", algorithm="HS256", key=secret)
            self.verification[self.signing.kid] = VerificationKey(self.signing.kid, frozenset({"HS256"}), secret)

    def _add_public(self, public_key: rsa.RSAPublicKey) -> None:
        jwk = rsa_public_jwk(public_key)
        self.verification[jwk["kid"]] = VerificationKey(jwk["kid"], frozenset({"RS256"}), _public_pem(public_key))
        self._jwks.append(jwk)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """Public keys as a JWKS document (empty with a shared secret, which is never published)."""
        return {"keys": list(self._jwks)}

    def get(self, kid: str) -> VerificationKey | None:
        return self.verification.get(kid)


class OidcKeys:
    """An external provider's JWKS, cached, refetched on expiry or (rate-limited) on an unknown kid."""

    def __init__(self, *, url: str, algorithms: list[str], cache_seconds: int, timeout: float = 3.0) -> None:
        self._url = url
        self._algorithms = frozenset(algorithms)
        self._cache_seconds = cache_seconds
        self._timeout = timeout
        self._keys: dict[str, VerificationKey] = {}
        self._fetched_at = 0.0
        self._attempted_at = 0.0
        self._lock = threading.Lock()

    def get(self, kid: str) -> VerificationKey | None:
        now = time.monotonic()
        with self._lock:
            stale = now - self._fetched_at > self._cache_seconds
            unknown = kid not in self._keys
            if (stale or unknown) and now - self._attempted_at >= _MIN_REFETCH_SECONDS:
                self._attempted_at = now
                self._refresh()
            return self._keys.get(kid)

    def _refresh(self) -> None:
        try:
            response = httpx.get(self._url, timeout=self._timeout)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            # Keep serving the last good keys: the provider being down must not lock everyone out.
            log.warning("OIDC JWKS fetch failed", extra={"url": self._url, "error": str(exc)})
            return
        keys: dict[str, VerificationKey] = {}
        for jwk in document.get("keys", []) if isinstance(document, dict) else []:
            if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig" or not isinstance(jwk.get("kid"), str):
                continue
            # A JWK that names its `alg` is pinned to it; one without may use its key type's allowed ones.
            allowed = _ALGORITHMS_BY_KTY.get(str(jwk.get("kty")), frozenset()) & self._algorithms
            if "alg" in jwk:
                allowed &= {str(jwk["alg"])}
            if allowed:
                keys[jwk["kid"]] = VerificationKey(jwk["kid"], allowed, jwk)
        self._keys = keys
        self._fetched_at = time.monotonic()
