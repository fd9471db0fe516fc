"""The dashboard's refresh cookie: set at login, rotated on every use, reuse revokes the family, logout ends it."""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, select, update
from starlette.testclient import TestClient

from api import Role, create_principal, set_disabled
from core.schema import refresh_tokens
from tests.api.conftest import TENANT_A, bearer

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


@pytest.fixture
def user(db: Engine) -> str:
    with db.begin() as connection:
        create_principal(
            connection=connection,
            principal_id="dora",
            kind="user",
            secret=PASSWORD,
            roles=[Role.ANALYST],
            tenants=[TENANT_A],
            actor="test",
        )
    return "dora"


def _cookie(response_headers: list[str]) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in response_headers:
        jar.load(header)
    return jar


def _login(client: TestClient, username: str) -> str:
    response = client.post(
        "/v1/auth/token", data={"grant_type": "password", "username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return _refresh_token_of(response.headers.get_list("set-cookie"))


def _refresh_token_of(headers: list[str]) -> str:
    morsel = _cookie(headers)["vigil_refresh"]
    return morsel.value


def _refresh(client: TestClient, token: str | None) -> tuple[int, dict[str, Any], list[str]]:
    headers = {"Cookie": f"vigil_refresh={token}"} if token is not None else {}
    response = client.post("/v1/auth/refresh", headers=headers)
    return response.status_code, response.json() if response.content else {}, response.headers.get_list("set-cookie")


def test_password_login_sets_an_httponly_secure_strict_cookie_scoped_to_the_auth_path(
    client: TestClient, user: str
) -> None:
    response = client.post("/v1/auth/token", data={"grant_type": "password", "username": user, "password": PASSWORD})
    assert response.status_code == 200
    header = response.headers["set-cookie"]
    morsel = _cookie([header])["vigil_refresh"]
    assert morsel["httponly"] and morsel["secure"] and morsel["samesite"].lower() == "strict"
    assert morsel["path"] == "/v1/auth" and int(morsel["max-age"]) > 3600
    assert len(morsel.value) >= 40 and morsel.value not in response.text


def test_the_cookie_can_be_made_non_secure_for_local_http(api_settings: object, db: Engine, user: str) -> None:
    from api import create_app
    from core.settings import Settings

    assert isinstance(api_settings, Settings)
    app = create_app(api_settings.model_copy(update={"refresh_cookie_secure": False}), engine=db)
    with TestClient(app) as client:
        response = client.post(
            "/v1/auth/token", data={"grant_type": "password", "username": user, "password": PASSWORD}
        )
    morsel = _cookie([response.headers["set-cookie"]])["vigil_refresh"]
    assert not morsel["secure"] and morsel["httponly"]


def test_client_credentials_get_no_refresh_cookie(client: TestClient, db: Engine) -> None:
    with db.begin() as connection:
        create_principal(
            connection=connection,
            principal_id="pos-9",
            kind="client",
            secret="s3cret-s3cret-s3cret",
            roles=[Role.INGEST],
            tenants=[TENANT_A],
            actor="test",
        )
    response = client.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": "pos-9", "client_secret": "s3cret-s3cret-s3cret"},
    )
    assert response.status_code == 200 and "set-cookie" not in response.headers


def test_refresh_rotates_the_cookie_and_answers_a_working_access_token(
    client: TestClient, user: str, db: Engine
) -> None:
    first = _login(client, user)
    status, body, cookies = _refresh(client, first)
    assert status == 200, body
    second = _refresh_token_of(cookies)
    assert second != first
    me = client.get("/v1/auth/me", headers=bearer(str(body["access_token"])))
    assert me.status_code == 200 and me.json()["principal_id"] == user
    status, body, cookies = _refresh(client, second)
    assert status == 200 and _refresh_token_of(cookies) not in (first, second)
    with db.connect() as connection:
        families = connection.execute(select(refresh_tokens.c.family_id).distinct()).all()
    assert len(families) == 1


def test_reusing_a_rotated_token_revokes_the_whole_family(client: TestClient, user: str) -> None:
    first = _login(client, user)
    status, _, cookies = _refresh(client, first)
    assert status == 200
    second = _refresh_token_of(cookies)
    status, body, _ = _refresh(client, first)  # the stolen copy
    assert status == 401 and body["error"]["code"] == "invalid_refresh_token"
    assert "reused" in str(body["error"]["message"])
    status, body, _ = _refresh(client, second)  # the legitimate holder is logged out too
    assert status == 401 and body["error"]["code"] == "invalid_refresh_token"
    # A fresh login starts a new, working family.
    assert _refresh(client, _login(client, user))[0] == 200


def test_absent_unknown_or_expired_refresh_tokens_get_401(client: TestClient, user: str, db: Engine) -> None:
    assert _refresh(client, None)[0] == 401
    assert _refresh(client, "not-a-token-we-issued")[0] == 401
    token = _login(client, user)
    with db.begin() as connection:
        connection.execute(update(refresh_tokens).values(expires_at=refresh_tokens.c.issued_at))
    status, body, _ = _refresh(client, token)
    assert status == 401 and "expired" in str(body["error"]["message"])


def test_a_disabled_user_cannot_refresh(client: TestClient, user: str, db: Engine) -> None:
    token = _login(client, user)
    with db.begin() as connection:
        set_disabled(connection=connection, principal_id=user, disabled=True, actor="test")
    assert _refresh(client, token)[0] == 401


def test_logout_clears_the_cookie_and_ends_the_session(client: TestClient, user: str) -> None:
    token = _login(client, user)
    status, _, cookies = _refresh(client, token)
    assert status == 200
    current = _refresh_token_of(cookies)
    response = client.post("/v1/auth/logout", headers={"Cookie": f"vigil_refresh={current}"})
    assert response.status_code == 204
    cleared = _cookie(response.headers.get_list("set-cookie"))["vigil_refresh"]
    assert cleared.value == "" and cleared["path"] == "/v1/auth" and int(cleared["max-age"]) == 0
    assert _refresh(client, current)[0] == 401
    # Logging out without a cookie is harmless.
    assert client.post("/v1/auth/logout").status_code == 204


def test_refresh_tokens_are_stored_only_as_hashes(client: TestClient, user: str, db: Engine, app: FastAPI) -> None:
    del app
    token = _login(client, user)
    with db.connect() as connection:
        stored = connection.execute(select(refresh_tokens.c.token_hash)).scalars().all()
    assert len(stored) == 1 and stored[0] != token and len(stored[0]) == 64
