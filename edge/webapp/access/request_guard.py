"""Who may use the kiosk, and the browser protections on every response.

- Every page needs a personal staff login (edge.webapp.access.accounts): the signed session cookie holds a
  token that is checked against the server's session table on each request, so logging out, an
  idle timeout or a disabled login ends it at once. `current_actor()` names who acts, for the audit.
- The JSON API needs a credential in every configuration: an API token an administrator made for
  one clinic system (edge.webapp.access.api_tokens), the operator access code, both as
  `Authorization: Bearer <token>`, or a logged-in staff session (the kiosk's own pages). Repeated
  wrong tokens from one address lock it out; a locked-out address is refused before its token is
  looked at, so even the right one gets 429 and the answer tells a guesser nothing.
- Requests from another site are refused: any state-changing request, and every API request, whose
  `Origin` or `Sec-Fetch-Site` says it came from elsewhere (the `Host` check is
  edge.webapp.access.host_guard).
- Forms carry CSRF tokens (flask-wtf); the JSON API is exempt: a cookie reaches it only from the
  kiosk's own origin (SameSite=Strict, and the origin check above).
- Every response gets a strict Content-Security-Policy (everything from this kiosk, nothing inline,
  no framing) and the usual hardening headers; nothing but static files may be cached.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from flask import (
    Flask,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.security import check_password_hash, generate_password_hash

from edge.files import atomic_write_bytes
from edge.webapp.access import accounts, api_tokens
from edge.webapp.access.accounts import LockedOutError, Staff
from edge.webapp.records import database

log = logging.getLogger(__name__)

ACCESS_CODE_FILE = "access-code.hash"
SECRET_KEY_FILE = "secret-key"
MIN_ACCESS_CODE_LENGTH = 8
#: Endpoints anyone may reach: the login itself, its language switch, static files, and the health check.
PUBLIC_ENDPOINTS = frozenset({"auth.login", "i18n.set_language", "static", "api.healthz"})
API_ACTOR = "API client"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
}

csrf = CSRFProtect()


class AccessCodeError(ValueError):
    """An access code that may not be used; the message says what would be valid."""


def check_access_code_rule(code: str) -> None:
    if len(code) < MIN_ACCESS_CODE_LENGTH:
        raise AccessCodeError(
            f"the access code is {len(code)} characters long; use at least {MIN_ACCESS_CODE_LENGTH}"
        )
    if code != code.strip() or not code.isprintable():
        raise AccessCodeError("the access code may not start or end with spaces or hold control characters")


def store_access_code(data_dir: Path | str, code: str) -> str:
    """Hash the code (werkzeug's default, scrypt) into the data folder, replacing any earlier one."""
    check_access_code_rule(code)
    code_hash = generate_password_hash(code)
    _write_private(Path(data_dir) / ACCESS_CODE_FILE, code_hash.encode())
    return code_hash


def load_access_code_hash(data_dir: Path | str) -> str | None:
    path = Path(data_dir) / ACCESS_CODE_FILE
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def load_or_create_secret_key(data_dir: Path | str) -> bytes:
    """The session-signing key, made once per data folder so logins survive a restart."""
    path = Path(data_dir) / SECRET_KEY_FILE
    if path.is_file():
        return path.read_bytes()
    key = secrets.token_bytes(32)
    _write_private(path, key)
    return key


class AccessGuard:
    """Checks the operator access code against the stored hash, remembering the one that worked.

    scrypt takes tens of milliseconds by design; after the first success the API compares a
    sha256 of the presented code in constant time instead, so clinic systems are not slowed down.
    The lockout is looked at first; other attempts are counted in the database before the hash is
    checked (edge.webapp.access.accounts.reserve_attempt), so parallel wrong codes cannot get past it.
    """

    def __init__(self, code_hash: str | None) -> None:
        self.code_hash = code_hash
        self._verified: bytes | None = None

    @property
    def enabled(self) -> bool:
        return self.code_hash is not None

    def check(self, code: str, client: str) -> bool:
        """True when `code` is the access code; LockedOutError while `client` is locked out,
        whatever the code, and after too many wrong ones."""
        conn = database.get_db()
        keys = [f"api:{client}"]
        wait = accounts.locked_for(conn, keys)
        if wait:
            raise LockedOutError(keys[0], wait)
        digest = hashlib.sha256(code.encode("utf-8", "surrogateescape")).digest()
        if self._verified is not None and hmac.compare_digest(digest, self._verified):
            return True
        accounts.reserve_attempt(conn, keys)
        if self.code_hash is not None and check_password_hash(self.code_hash, code):
            self._verified = digest
            accounts.clear_attempts(conn, keys)
            return True
        log.warning("wrong API credential from %s", client)
        return False


def guard() -> AccessGuard:
    return current_app.extensions["pneumoedge.access"]


def init_app(app: Flask) -> None:
    """Install the origin check, CSRF protection, the access check and the response headers."""
    app.extensions["pneumoedge.access"] = AccessGuard(app.config.get("ACCESS_CODE_HASH"))
    app.before_request(_refuse_other_sites)
    app.before_request(_require_access)  # before CSRF: a logged-out user is sent to the login page
    csrf.init_app(app)
    app.after_request(_harden)


def is_api_request() -> bool:
    return request.path.startswith("/api/") or request.path == "/healthz"


def current_staff() -> Staff | None:
    """The staff member logged in on this browser, checked against the server's session table."""
    if "staff" not in g:
        token = session.get("sid")
        staff = None
        if isinstance(token, str) and token:
            staff = accounts.session_staff(
                database.get_db(),
                token,
                float(current_app.config["IDLE_LOGOUT_S"]),
                current_app.config["PERMANENT_SESSION_LIFETIME"].total_seconds(),
                current_app.extensions.setdefault("pneumoedge.sessions_seen", {}),
            )
            if staff is None:
                session.clear()
        g.staff = staff
    return g.staff


def current_actor() -> database.Actor:
    """Who is acting in this request: the logged-in staff member, or the API credential's holder."""
    if is_api_request():
        return g.get("api_actor") or database.Actor(None, API_ACTOR)
    staff = current_staff()
    return staff.actor if staff is not None else database.Actor(None, API_ACTOR)


def _refuse_other_sites() -> Response | None:
    """403 for a state-changing or API request that a page on another site made a browser send."""
    if request.method in SAFE_METHODS and not request.path.startswith("/api/"):
        return None
    if _same_origin():
        return None
    from edge.webapp.views.errors import error_response  # errors imports this module

    log.warning("refused a cross-origin %s request", request.method)
    return error_response(
        403,
        "cross_origin",
        "Requests from other web sites are refused. Use the kiosk's own pages, or call the API "
        "from a clinic system with an API token.",
    )


def _same_origin() -> bool:
    """Sec-Fetch-Site when the browser sends it (every current one does); else the Origin's host.

    With `Referrer-Policy: no-referrer` browsers send `Origin: null` even on the kiosk's own form
    posts, so the Origin decides only for clients without Sec-Fetch-Site; there, "null" (also what a
    sandboxed frame on another site sends) is refused.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not sent by a browser, or a plain navigation by an old one
    return urlsplit(origin).netloc.lower() == request.host.lower()


def _require_access() -> Response | None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if isinstance(request.routing_exception, MethodNotAllowed):
        return None  # a wrong method is a 405 (with Allow) whoever asks: it reveals nothing
    if is_api_request():
        return _require_api_credential()
    if current_staff() is not None:
        return None
    return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))


def _require_api_credential() -> Response | None:
    """An API token or the access code as a bearer token, or else a logged-in staff session."""
    client = request.remote_addr or "unknown"
    header = request.headers.get("Authorization")
    if header is None:
        staff = current_staff()
        if staff is not None:
            g.api_actor = staff.actor
            return None
        return _api_denied(
            401,
            "unauthorised",
            "The API needs a credential: send an API token (an administrator makes one on the Staff "
            "page) as 'Authorization: Bearer <token>'.",
        )
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        return _api_denied(401, "unauthorised", "Send the API token as 'Authorization: Bearer <token>'.")
    try:
        actor = _bearer_actor(secret, client)
    except LockedOutError as e:
        wait = max(1, math.ceil(e.retry_after_s))  # whole seconds, for the Retry-After header
        response = _api_denied(429, "locked_out", f"Too many wrong API tokens; wait {wait} seconds.")
        response.headers["Retry-After"] = str(wait)
        return response
    if actor is None:
        return _api_denied(401, "unauthorised", "The API token is wrong or was revoked.")
    g.api_actor = actor
    return None


def _bearer_actor(secret: str, client: str) -> database.Actor | None:
    """Who holds this bearer secret: an API token's system, or the operator access code's."""
    conn = database.get_db()
    wait = accounts.locked_for(conn, [f"api:{client}"])
    if wait:
        raise LockedOutError(client, wait)
    token = api_tokens.find_active(conn, secret)
    if token is not None:
        return token.actor
    return database.Actor(None, API_ACTOR) if guard().check(secret, client) else None


def _api_denied(status: int, code: str, message: str) -> Response:
    response = jsonify(error={"code": code, "message": message})
    response.status_code = status
    response.headers["WWW-Authenticate"] = 'Bearer realm="PneumoEdge"'
    return response


def _harden(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret readable by the kiosk's user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    path.chmod(0o600)
