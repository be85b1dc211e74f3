"""Access code, CSRF and response headers."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

import edge.webapp
from edge.webapp.access import accounts, request_guard

from .helpers import NURSE, NURSE_PIN, AppFactory, add_staff, login, post_file, stored_state
from .test_pages import alert_text

CODE = "correct-horse-battery"


@pytest.fixture
def locked_app(make_app: AppFactory) -> Flask:
    return make_app(ACCESS_CODE_HASH=generate_password_hash(CODE))


def csrf_token(page: bytes) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.decode())
    assert match, "the form carries no CSRF token"
    return match.group(1)


def test_every_page_and_api_response_is_hardened(client: FlaskClient) -> None:
    for url in ("/", "/history", "/healthz", "/api/v1/results", "/cases/1"):
        headers = client.get(url).headers
        assert headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "script-src" not in headers["Content-Security-Policy"]  # 'self' only: nothing inline
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cache-Control"] == "no-store"
    assert client.get("/static/kiosk.css").headers.get("Cache-Control") != "no-store"


def test_templates_hold_no_inline_script_or_style() -> None:
    """The CSP forbids inline code, so any would silently not run."""
    templates = sorted((Path(edge.webapp.__file__).parent / "templates").rglob("*.html"))
    assert len(templates) > 1
    for template in templates:
        text = template.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template.name
        assert "<style" not in text and " style=" not in text and " onclick=" not in text, template.name


def test_forms_need_a_csrf_token_but_the_api_does_not(
    make_app: AppFactory, data_dir: Path, small_xray: bytes
) -> None:
    app = make_app(WTF_CSRF_ENABLED=True)
    add_staff(app, NURSE, NURSE_PIN)
    client = app.test_client()
    assert login(client).status_code == 302  # the login form itself carries a token
    refused = post_file(client, "/assess", small_xray)
    assert refused.status_code == 400
    assert alert_text(refused.data).startswith("This form has expired or did not come from this kiosk.")
    assert stored_state(data_dir) == (0, [])
    token = csrf_token(client.get("/").data)
    accepted = client.post(
        "/assess",
        data={"file": (io.BytesIO(small_xray), "x.jpg"), "csrf_token": token},
        content_type="multipart/form-data",
    )
    assert accepted.status_code == 303
    assert post_file(client, "/api/v1/predict", small_xray).status_code == 201


def test_pages_need_a_personal_login(app: Flask) -> None:
    add_staff(app, NURSE, NURSE_PIN)
    client = app.test_client()
    response = client.get("/history?case_ref=A")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/history?case_ref%3DA"
    wrong = login(client, NURSE, "000000")
    assert wrong.status_code == 401
    assert (
        alert_text(wrong.data) == "That name and PIN do not match an active login. Check both and try again."
    )
    assert client.get("/").status_code == 302
    right = login(client, target="/history")
    assert right.status_code == 302 and right.headers["Location"] == "/history"
    page = client.get("/")
    assert page.status_code == 200 and NURSE in page.data.decode()  # who is logged in is shown
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/\t/evil.example",  # /login?next=/%09/evil.example: browsers drop the tab
        "/\n/evil.example",
        "/x\r\nSet-Cookie: a=b",
        "/ /evil.example",
        "javascript:alert(1)",
    ],
)
def test_login_never_redirects_off_the_kiosk(app: Flask, target: str) -> None:
    add_staff(app, NURSE, NURSE_PIN)
    client = app.test_client()
    assert client.get("/login", query_string={"next": target}).status_code == 200
    response = login(client, target=target)
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_a_same_site_next_path_is_kept(app: Flask) -> None:
    add_staff(app, NURSE, NURSE_PIN)
    client = app.test_client()
    assert login(client, target="/cases/3?x=1").headers["Location"] == "/cases/3?x=1"


def test_the_access_code_is_a_bearer_credential(locked_app: Flask, small_xray: bytes) -> None:
    client = locked_app.test_client()
    missing = post_file(client, "/api/v1/predict", small_xray)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = client.get("/api/v1/results", headers={"Authorization": "Bearer nope-nope-nope"})
    assert wrong.status_code == 401
    assert wrong.get_json()["error"]["message"] == "The API token is wrong or was revoked."
    for _ in range(2):  # the second call is served from the remembered digest
        ok = post_file(client, "/api/v1/predict", small_xray, headers={"Authorization": f"Bearer {CODE}"})
        assert ok.status_code == 201


def test_repeated_wrong_codes_lock_the_address_out_even_for_the_right_code(locked_app: Flask) -> None:
    client = locked_app.test_client()
    right = {"Authorization": f"Bearer {CODE}"}
    assert client.get("/api/v1/results", headers=right).status_code == 200  # the right code, remembered
    for _ in range(accounts.MAX_FAILURES):
        assert (
            client.get("/api/v1/results", headers={"Authorization": "Bearer wrong-code"}).status_code == 401
        )
    locked = client.get("/api/v1/results", headers=right)
    assert locked.status_code == 429
    assert "Too many wrong API tokens" in locked.get_json()["error"]["message"]
    assert 1 <= int(locked.headers["Retry-After"]) <= accounts.LOCKOUT_S


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("short", "the access code is 5 characters long; use at least 8"),
        (" padded-code ", "may not start or end with spaces"),
        ("tab\there-code", "control characters"),
    ],
)
def test_weak_access_codes_are_refused(data_dir: Path, code: str, message: str) -> None:
    with pytest.raises(request_guard.AccessCodeError, match=message):
        request_guard.store_access_code(data_dir, code)
    assert request_guard.load_access_code_hash(data_dir) is None


def test_access_code_is_stored_only_as_a_private_hash(app: Flask, data_dir: Path) -> None:
    request_guard.store_access_code(data_dir, CODE)
    path = data_dir / request_guard.ACCESS_CODE_FILE
    assert CODE not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    guard = request_guard.AccessGuard(request_guard.load_access_code_hash(data_dir))
    with app.app_context():
        assert guard.check(CODE, "127.0.0.1") and not guard.check(CODE + "x", "127.0.0.1")
