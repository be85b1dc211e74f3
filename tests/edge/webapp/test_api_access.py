"""The API needs a credential in every configuration; other sites and other names are refused."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from edge.webapp.access import accounts, api_tokens
from edge.webapp.records import database

from .helpers import (
    ADMIN,
    ADMIN_PIN,
    NURSE,
    NURSE_PIN,
    AppFactory,
    add_staff,
    audit_rows,
    login,
    post_file,
    stored_state,
)

CODE = "correct-horse-battery"
EVIL = "http://evil.example"


@pytest.fixture(params=["no access code", "access code"])
def any_app(request: pytest.FixtureRequest, make_app: AppFactory) -> Flask:
    """The kiosk as `make kiosk` ships it (no code) and as a networked one (with a code)."""
    if request.param == "access code":
        return make_app(ACCESS_CODE_HASH=generate_password_hash(CODE))
    return make_app()


def make_token(app: Flask, name: str = "Lab system") -> str:
    conn = database.connect(database.db_path(app.config["DATA_DIR"]))
    try:
        return api_tokens.create(conn, name, database.Actor(None, "test set-up"))[1]
    finally:
        conn.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_api_call_without_a_credential_is_refused_in_every_configuration(
    any_app: Flask, data_dir: Path, small_xray: bytes
) -> None:
    client = any_app.test_client()
    for url in ("/api/v1/results", "/api/v1/results/1", "/api/v1/results/1/heatmap.png"):
        refused = client.get(url)
        assert refused.status_code == 401, url
        assert refused.get_json()["error"]["code"] == "unauthorised"
    created = post_file(client, "/api/v1/predict", small_xray)
    assert created.status_code == 401
    assert stored_state(data_dir) == (0, [])
    assert client.get("/healthz").status_code == 200  # monitoring stays open


def test_a_token_made_on_the_staff_page_works_is_audited_and_stops_when_revoked(
    any_app: Flask, data_dir: Path, small_xray: bytes
) -> None:
    add_staff(any_app, ADMIN, ADMIN_PIN, "admin")
    admin = any_app.test_client()
    assert login(admin, ADMIN, ADMIN_PIN).status_code == 302
    made = admin.post("/staff/api-tokens", data={"name": "Lab system"})
    assert made.status_code == 201
    token = re.search(r'id="new-token">([^<]+)<', made.data.decode()).group(1)
    assert "shown only this once" in made.data.decode()
    assert token not in admin.get("/staff/api-tokens").data.decode()  # shown once only

    client = any_app.test_client()
    case = post_file(client, "/api/v1/predict", small_xray, headers=bearer(token))
    assert case.status_code == 201
    case_id = case.get_json()["id"]
    assert client.get(f"/api/v1/results/{case_id}", headers=bearer(token)).status_code == 200
    assert client.get(f"/api/v1/results/{case_id}/heatmap.png", headers=bearer(token)).status_code == 200
    assert client.get("/api/v1/results", headers=bearer(token)).status_code == 200
    uses = [(row["actor"], row["action"]) for row in audit_rows(data_dir) if row["actor"].startswith("API")]
    assert uses == [
        ("API token: Lab system", "screen"),
        ("API token: Lab system", "api_view_result"),
        ("API token: Lab system", "api_view_heatmap"),
        ("API token: Lab system", "api_list_results"),
    ]
    raw = sqlite3.connect(database.db_path(data_dir))
    stored = raw.execute("SELECT token_sha256 FROM api_tokens").fetchone()[0]
    raw.close()
    assert stored == api_tokens.digest(token) and token not in database.db_path(data_dir).read_bytes().decode(
        "latin-1"
    )

    token_id = api_tokens.list_all(database.connect(database.db_path(data_dir)))[0].id
    assert admin.post(f"/staff/api-tokens/{token_id}/revoke").status_code == 303
    refused = client.get("/api/v1/results", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.get_json()["error"]["message"] == "The API token is wrong or was revoked."
    actions = [row["action"] for row in audit_rows(data_dir)]
    assert "api_token_create" in actions and "api_token_revoke" in actions


def test_only_an_administrator_manages_tokens(client: FlaskClient) -> None:
    assert client.get("/staff/api-tokens").status_code == 403
    assert client.post("/staff/api-tokens", data={"name": "Lab system"}).status_code == 403


def test_a_token_needs_a_system_name(admin_client: FlaskClient) -> None:
    refused = admin_client.post("/staff/api-tokens", data={"name": "<x>"})
    assert refused.status_code == 400
    assert "Name the clinic system the token is for" in refused.data.decode()


def test_the_kiosks_own_pages_session_may_read_the_api_but_not_from_another_site(
    any_app: Flask, data_dir: Path, small_xray: bytes
) -> None:
    add_staff(any_app, NURSE, NURSE_PIN)
    client = any_app.test_client()
    login(client)
    for same in (
        {"Sec-Fetch-Site": "same-origin", "Origin": "null"},  # Chromium's form posts (no-referrer)
        {"Origin": "http://localhost"},
        {},
    ):
        assert client.get("/api/v1/results", headers=same).status_code == 200
    for headers in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost"},
        {"Origin": EVIL},
        {"Origin": "null"},
    ):
        refused = client.get("/api/v1/results", headers=headers)
        assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "cross_origin"
        assert post_file(client, "/api/v1/predict", small_xray, headers=headers).status_code == 403
    assert stored_state(data_dir) == (0, [])


def test_a_cross_origin_post_is_refused_even_with_a_token(
    any_app: Flask, data_dir: Path, small_xray: bytes
) -> None:
    token = make_token(any_app)
    client = any_app.test_client()
    refused = post_file(client, "/api/v1/predict", small_xray, headers={**bearer(token), "Origin": EVIL})
    assert refused.status_code == 403
    add_staff(any_app, NURSE, NURSE_PIN)
    login(client)
    page = post_file(client, "/assess", small_xray, headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    assert page.status_code == 403
    assert "Requests from other web sites are refused" in page.data.decode()
    assert stored_state(data_dir) == (0, [])


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:8080", "localhost.evil.example", f"{'a' * 64}.example", "a" * 64],
)
def test_a_foreign_or_malformed_host_is_a_400_with_the_security_headers(any_app: Flask, host: str) -> None:
    client = any_app.test_client()
    for url in ("/login", "/healthz", "/api/v1/results"):
        response = client.get(url, headers={"Host": host})
        assert response.status_code == 400, url
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert response.headers["Cache-Control"] == "no-store"
    assert client.get("/healthz", headers={"Host": host}).get_json()["error"]["code"] == "bad_host"


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:8080", "127.0.0.1:8080", "[::1]:8080", "kiosk.local", "0.0.0.0:8080"]
)
def test_the_kiosks_own_names_are_served(make_app: AppFactory, host: str) -> None:
    """The local names, ALLOWED_HOSTS, and the address it listens on (the device's health check)."""
    client = make_app(ALLOWED_HOSTS=("kiosk.local",), HOST="0.0.0.0").test_client()
    assert client.get("/healthz", headers={"Host": host}).status_code == 200


def test_a_locked_out_address_gets_429_for_a_valid_token_too(any_app: Flask) -> None:
    token = make_token(any_app)
    client = any_app.test_client()
    for _ in range(accounts.MAX_FAILURES):
        assert client.get("/api/v1/results", headers=bearer("pe_wrong")).status_code == 401
    locked = client.get("/api/v1/results", headers=bearer(token))
    assert locked.status_code == 429
    assert 1 <= int(locked.headers["Retry-After"]) <= accounts.LOCKOUT_S


def test_a_locked_out_login_says_when_to_retry(app: Flask) -> None:
    add_staff(app, NURSE, NURSE_PIN)
    client = app.test_client()
    for _ in range(accounts.MAX_FAILURES):
        assert login(client, NURSE, "999999").status_code == 401
    locked = login(client)
    assert locked.status_code == 429 and locked.headers["Retry-After"] == "60"


def test_a_wrong_method_is_405_with_allow_whatever_the_credential(any_app: Flask) -> None:
    client = any_app.test_client()
    for url, allowed in (("/healthz", "GET"), ("/api/v1/results", "GET"), ("/api/v1/predict", "POST")):
        response = client.delete(url)
        assert response.status_code == 405, url
        assert allowed in response.headers["Allow"]
        assert response.get_json()["error"]["code"] == "method_not_allowed"
