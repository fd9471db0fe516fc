"""JWT verification (attacks rejected with 401), key rotation, the token endpoint and OIDC."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from jose import jwt
from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from api import ApiPorts, create_app, create_principal
from api.auth.errors import InvalidTokenError
from api.auth.keys import VigilKeys, rsa_public_jwk
from api.auth.tokens import TokenVerifier
from api.permissions import Role
from core.schema import audit_log, principals
from core.settings import Settings
from tests.api.conftest import TENANT_A, KeyPair, TokenFactory, bearer, context

pytestmark = pytest.mark.integration


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(settings: Settings, subject: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": subject,
        "iat": now,
        "exp": now + 300,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _kid(key: KeyPair) -> str:
    public = serialization.load_pem_public_key(key.public_pem.encode())
    return rsa_public_jwk(public)["kid"]  # type: ignore[arg-type]


def _sign(key: KeyPair, claims: dict[str, Any], *, kid: str | None = None) -> str:
    return jwt.encode(claims, key.private_pem, algorithm="RS256", headers={"kid": kid or _kid(key)})


@pytest.fixture
def subject(token_for: TokenFactory) -> str:
    token_for("analyst", principal_id="alice")
    return "alice"


def _status(client: TestClient, token: str) -> int:
    return int(client.get("/v1/auth/me", headers=bearer(token)).status_code)


def test_a_well_formed_token_is_accepted(
    client: TestClient, api_settings: Settings, signing_key: KeyPair, subject: str
) -> None:
    response = client.get("/v1/auth/me", headers=bearer(_sign(signing_key, _claims(api_settings, subject))))
    assert response.status_code == 200
    assert response.json()["principal_id"] == "alice"
    assert "cases:write" in response.json()["permissions"]


def test_alg_none_is_rejected(client: TestClient, api_settings: Settings, signing_key: KeyPair, subject: str) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": _kid(signing_key)}).encode())
    payload = _b64(json.dumps(_claims(api_settings, subject)).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        response = client.get("/v1/auth/me", headers=bearer(token))
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_token"


def test_hs256_signed_with_the_rsa_public_key_is_rejected(
    client: TestClient, api_settings: Settings, signing_key: KeyPair, subject: str
) -> None:
    # The classic key-confusion attack: the public key used as an HMAC secret.
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": _kid(signing_key)}).encode())
    payload = _b64(json.dumps(_claims(api_settings, subject)).encode())
    import hashlib
    import hmac

    signature = hmac.new(signing_key.public_pem.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert _status(client, f"{header}.{payload}.{_b64(signature)}") == 401


def test_missing_exp_is_rejected(
    client: TestClient, api_settings: Settings, signing_key: KeyPair, subject: str
) -> None:
    assert _status(client, _sign(signing_key, _claims(api_settings, subject, exp=None))) == 401


def test_expired_token_is_rejected_beyond_the_leeway(
    client: TestClient, api_settings: Settings, signing_key: KeyPair, subject: str
) -> None:
    now = int(time.time())
    leeway = api_settings.jwt_leeway_seconds
    expired = _claims(api_settings, subject, iat=now - 3600, exp=now - leeway - 5)
    assert _status(client, _sign(signing_key, expired)) == 401
    # Within the bounded skew a just-expired token still passes (clocks differ by seconds).
    skewed = _claims(api_settings, subject, iat=now - 3600, exp=now - leeway // 2)
    assert _status(client, _sign(signing_key, skewed)) == 200


def test_a_verified_token_is_remembered_only_until_it_expires(
    api_settings: Settings, signing_key: KeyPair, subject: str
) -> None:
    # No leeway, so the only thing that can keep this token alive past `exp` is the verdict cache.
    strict = api_settings.model_copy(update={"jwt_leeway_seconds": 0})
    verifier = TokenVerifier(strict, VigilKeys(strict))
    now = int(time.time())
    token = _sign(signing_key, _claims(strict, subject, iat=now - 10, exp=now + 2))
    first = verifier.verify(token)
    assert verifier.verify(token) is first  # the second request is answered from the cache
    time.sleep(max(0.0, now + 3.05 - time.time()))  # python-jose compares whole seconds
    with pytest.raises(InvalidTokenError, match="expired"):
        verifier.verify(token)
    # A different string (one changed signature character) is verified from scratch, not matched.
    with pytest.raises(InvalidTokenError):
        verifier.verify(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])


def test_wrong_audience_or_issuer_is_rejected(
    client: TestClient, api_settings: Settings, signing_key: KeyPair, subject: str
) -> None:
    assert _status(client, _sign(signing_key, _claims(api_settings, subject, aud="someone-else"))) == 401
    assert _status(client, _sign(signing_key, _claims(api_settings, subject, aud=None))) == 401
    assert _status(client, _sign(signing_key, _claims(api_settings, subject, iss="https://evil.example"))) == 401
    assert _status(client, _sign(signing_key, _claims(api_settings, subject, iss=None))) == 401


def test_tampered_signature_or_payload_is_rejected(
    client: TestClient, api_settings: Settings, signing_key: KeyPair, subject: str
) -> None:
    token = _sign(signing_key, _claims(api_settings, subject))
    header, payload, signature = token.split(".")
    flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
    assert _status(client, f"{header}.{payload}.{flipped}") == 401
    forged = _b64(json.dumps(_claims(api_settings, "admin-root")).encode())
    assert _status(client, f"{header}.{forged}.{signature}") == 401


def test_unknown_or_missing_kid_is_rejected(
    client: TestClient, api_settings: Settings, signing_key: KeyPair, subject: str
) -> None:
    assert _status(client, _sign(signing_key, _claims(api_settings, subject), kid="no-such-key")) == 401
    no_kid = jwt.encode(_claims(api_settings, subject), signing_key.private_pem, algorithm="RS256")
    assert _status(client, no_kid) == 401


def test_token_signed_by_an_unconfigured_key_is_rejected(
    client: TestClient, api_settings: Settings, tmp_path: Any, subject: str
) -> None:
    from tests.api.conftest import _keypair

    stranger = _keypair(tmp_path, "stranger")
    # Even when it claims the real key's kid.
    token = jwt.encode(
        _claims(api_settings, subject),
        stranger.private_pem,
        algorithm="RS256",
        headers={"kid": context_kid(client)},
    )
    assert _status(client, token) == 401


def context_kid(client: TestClient) -> str:
    keys = client.get("/v1/auth/jwks").json()["keys"]
    return str(keys[0]["kid"])


def test_missing_or_non_bearer_credentials_get_401(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Basic YWxpY2U6c2VjcmV0"}, {"Authorization": "Bearer"}):
        response = client.get("/v1/anomalies", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert set(response.json()["error"]) == {"code", "message", "details"}
    assert client.get("/v1/anomalies", headers=bearer("not.a.jwt")).status_code == 401
    assert client.get("/v1/anomalies", headers=bearer("x" * 9000)).status_code == 401


def test_rotation_retired_key_still_verifies_and_jwks_publishes_both(
    client: TestClient, api_settings: Settings, signing_key: KeyPair, retired_key: KeyPair, subject: str
) -> None:
    assert _status(client, _sign(retired_key, _claims(api_settings, subject))) == 200
    kids = {key["kid"] for key in client.get("/v1/auth/jwks").json()["keys"]}
    assert kids == {_kid(signing_key), _kid(retired_key)}
    # New tokens are signed with the current key only.
    issued = client.get("/v1/auth/me", headers=bearer(_sign(signing_key, _claims(api_settings, subject))))
    assert issued.status_code == 200


def test_disabled_or_deleted_principal_loses_access(
    app: FastAPI, client: TestClient, db: Engine, token_for: TokenFactory
) -> None:
    token = token_for("viewer", principal_id="bob")
    assert _status(client, token) == 200
    with db.begin() as connection:
        connection.execute(principals.update().where(principals.c.principal_id == "bob").values(disabled=True))
    context(app).principals.forget("bob")
    assert _status(client, token) == 401


def test_token_endpoint_password_and_client_credentials(app: FastAPI, client: TestClient, db: Engine) -> None:
    with db.begin() as connection:
        create_principal(
            connection=connection,
            principal_id="carol",
            kind="user",
            secret="correct horse battery",
            roles=[Role.ANALYST],
            tenants=[TENANT_A],
            actor="test",
        )
        create_principal(
            connection=connection,
            principal_id="pos-1",
            kind="client",
            secret="s3cret-s3cret-s3cret",
            roles=[Role.INGEST],
            tenants=[TENANT_A],
            actor="test",
        )
    ok = client.post(
        "/v1/auth/token", data={"grant_type": "password", "username": "carol", "password": "correct horse battery"}
    )
    assert ok.status_code == 200
    body = ok.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    me = client.get("/v1/auth/me", headers=bearer(body["access_token"])).json()
    assert me == {
        "principal_id": "carol",
        "kind": "user",
        "roles": ["analyst"],
        "tenants": [TENANT_A],
        "permissions": me["permissions"],
    }
    wrong = client.post("/v1/auth/token", data={"grant_type": "password", "username": "carol", "password": "nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_grant"
    unknown = client.post("/v1/auth/token", data={"grant_type": "password", "username": "zed", "password": "x"})
    assert unknown.status_code == 401
    # A user cannot use the client grant and vice versa.
    crossed = client.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": "carol", "client_secret": "correct horse battery"},
    )
    assert crossed.status_code == 401
    basic = base64.b64encode(b"pos-1:s3cret-s3cret-s3cret").decode()
    machine = client.post(
        "/v1/auth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert machine.status_code == 200
    claims = jwt.get_unverified_claims(machine.json()["access_token"])
    assert claims["sub"] == "pos-1" and claims["kind"] == "client" and claims["roles"] == ["ingest"]
    with db.connect() as connection:
        actions = set(connection.execute(select(audit_log.c.action)).scalars())
    assert {"user.create", "client.create"} <= actions


def test_login_attempts_are_rate_limited_per_source(api_settings: Settings, db: Engine) -> None:
    limited = api_settings.model_copy(update={"api_login_attempts_per_minute": 3})
    with TestClient(create_app(limited, ports=ApiPorts(), engine=db)) as client:
        codes = [
            client.post("/v1/auth/token", data={"grant_type": "password", "username": "x", "password": "y"}).status_code
            for _ in range(5)
        ]
        assert codes[:3] == [401, 401, 401]
        assert codes[3] == 429
        last = client.post("/v1/auth/token", data={"grant_type": "password", "username": "x", "password": "y"})
        assert int(last.headers["Retry-After"]) >= 1
        assert last.json()["error"]["code"] == "rate_limited"


def test_development_hs256_tokens_work_and_are_refused_by_an_rs256_deployment(
    settings: Settings, api_settings: Settings, db: Engine, token_for: TokenFactory
) -> None:
    token_for("viewer", principal_id="dev-user")
    dev_app = create_app(settings, ports=ApiPorts(), engine=db)  # HS256 with the development secret
    from api.permissions import Principal

    dev_token = context(dev_app).issuer.issue(
        Principal(principal_id="dev-user", kind="user", roles=frozenset({Role.VIEWER}), tenants=frozenset({TENANT_A}))
    )
    assert jwt.get_unverified_header(dev_token)["alg"] == "HS256"
    with TestClient(dev_app) as client:
        assert _status(client, dev_token) == 200
        assert client.get("/v1/auth/jwks").json() == {"keys": []}  # a shared secret is never published
    with TestClient(create_app(api_settings, ports=ApiPorts(), engine=db)) as client:
        assert _status(client, dev_token) == 401


# --- external OIDC provider ---------------------------------------------------------------------------


class _Jwks:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.requests = 0


@pytest.fixture
def jwks_server(signing_key: KeyPair) -> Iterator[tuple[str, _Jwks]]:
    """A local HTTP server standing in for the identity provider's JWKS endpoint."""
    state = _Jwks({"keys": []})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests += 1
            body = json.dumps(state.document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks", state
    server.shutdown()


def test_oidc_tokens_are_verified_against_the_providers_jwks(
    api_settings: Settings, db: Engine, retired_key: KeyPair, jwks_server: tuple[str, _Jwks]
) -> None:
    url, state = jwks_server
    idp_key = retired_key  # any RSA key the provider owns
    public = serialization.load_pem_public_key(idp_key.public_pem.encode())
    jwk = rsa_public_jwk(public)  # type: ignore[arg-type]
    jwk["kid"] = "idp-key-1"
    state.document = {"keys": [jwk]}
    settings = api_settings.model_copy(
        update={"oidc_jwks_url": url, "oidc_issuer": "https://idp.test", "oidc_audience": "vigil-oidc"}
    )
    now = int(time.time())
    claims = {
        "iss": "https://idp.test",
        "aud": "vigil-oidc",
        "sub": "42",
        "iat": now,
        "exp": now + 300,
        "roles": ["analyst", "not-a-vigil-role"],
        "tenants": "tenant-a tenant-c",
    }

    def sign(claims: dict[str, Any], kid: str = "idp-key-1") -> str:
        return jwt.encode(claims, idp_key.private_pem, algorithm="RS256", headers={"kid": kid})

    with TestClient(create_app(settings, ports=ApiPorts(), engine=db)) as client:
        me = client.get("/v1/auth/me", headers=bearer(sign(claims)))
        assert me.status_code == 200
        assert me.json()["principal_id"] == "oidc:42"
        assert me.json()["kind"] == "external"
        assert me.json()["roles"] == ["analyst"]
        assert me.json()["tenants"] == ["tenant-a", "tenant-c"]
        assert _status(client, sign({**claims, "aud": "vigil-api"})) == 401
        assert _status(client, sign(claims, kid="idp-key-unknown")) == 401
        requests_before = state.requests
        for _ in range(5):  # unknown kids do not hammer the provider
            assert _status(client, sign(claims, kid="another-unknown")) == 401
        assert state.requests <= requests_before + 1
