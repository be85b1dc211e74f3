"""Per-integration API tokens: one for each clinic system, made and revoked by an administrator.

A token is 32 random bytes (URL-safe base64, with a `pe_` prefix so it is recognisable in a
leaked file). It is shown once, when it is made; the kiosk keeps only its sha256, so a copy of the
database does not give API access. sha256 (not scrypt) is enough because the token is random: there
is nothing to guess, and the lookup by hash costs the same for every wrong token. Each token has a
name (which system holds it), so the audit log can say which system read or created what.

The table lives here, created if missing, rather than in edge.webapp.records.database's numbered schema: it is
independent of the case tables, and an older database simply gains it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
from dataclasses import dataclass

from flask import Flask
from flask_babel import gettext

from edge.webapp.records.database import Actor, append_audit, connect, db_path, utc_now, write

PREFIX = "pe_"
TOKEN_BYTES = 32
NAME_MAX = 40
_NAME = re.compile(r"^[\w][\w .'/()-]*$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_utc TEXT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_utc TEXT,
    revoked_by TEXT
);
"""


class TokenError(ValueError):
    """A token name or change that may not be made; the message says what would be valid."""


@dataclass(frozen=True)
class ApiToken:
    id: int
    name: str
    created_utc: str
    created_by: str
    revoked_utc: str | None
    revoked_by: str | None

    @property
    def active(self) -> bool:
        return self.revoked_utc is None

    @property
    def actor(self) -> Actor:
        """How the audit log names what this token's holder did."""
        return Actor(None, f"API token: {self.name}")


def init_app(app: Flask) -> None:
    """Create the token table if this database has none yet."""
    conn = connect(db_path(app.config["DATA_DIR"]))
    try:
        conn.executescript(_SCHEMA)
    finally:
        conn.close()


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def create(conn: sqlite3.Connection, name: str, actor: Actor) -> tuple[ApiToken, str]:
    """A new token for the system `name`: (its record, the token itself, to be shown once)."""
    name = " ".join(name.split())
    if not 2 <= len(name) <= NAME_MAX or not _NAME.match(name):
        raise TokenError(
            gettext(
                "Name the clinic system the token is for: 2 to %(max)d letters, digits, spaces "
                "or . ' / ( ) -",
                max=NAME_MAX,
            )
        )
    token = PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    with write(conn):
        cursor = conn.execute(
            "INSERT INTO api_tokens (name, token_sha256, created_utc, created_by) VALUES (?, ?, ?, ?)",
            (name, digest(token), utc_now(), actor.name),
        )
        append_audit(conn, actor, "api_token_create", new_value=name)
    record = get(conn, int(cursor.lastrowid))
    assert record is not None  # just committed on this connection
    return record, token


def revoke(conn: sqlite3.Connection, token_id: int, actor: Actor) -> ApiToken:
    """Revoke a token at once: the next call with it is refused."""
    with write(conn):
        record = get(conn, token_id)
        if record is None:
            raise TokenError(gettext("There is no API token #%(id)d.", id=token_id))
        if record.active:
            conn.execute(
                "UPDATE api_tokens SET revoked_utc = ?, revoked_by = ? WHERE id = ?",
                (utc_now(), actor.name, token_id),
            )
            append_audit(conn, actor, "api_token_revoke", old_value="active", new_value=record.name)
    revoked = get(conn, token_id)
    assert revoked is not None
    return revoked


def find_active(conn: sqlite3.Connection, token: str) -> ApiToken | None:
    """The active token with this value, or None."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM api_tokens WHERE token_sha256 = ? AND revoked_utc IS NULL", (digest(token),)
    ).fetchone()
    return ApiToken(**dict(row)) if row else None


def get(conn: sqlite3.Connection, token_id: int) -> ApiToken | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM api_tokens WHERE id = ?", (token_id,)).fetchone()
    return ApiToken(**dict(row)) if row else None


def list_all(conn: sqlite3.Connection) -> list[ApiToken]:
    """Active tokens first, then revoked ones; newest first within each."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM api_tokens ORDER BY revoked_utc IS NOT NULL, id DESC"
    ).fetchall()
    return [ApiToken(**dict(row)) for row in rows]


_COLUMNS = "id, name, created_utc, created_by, revoked_utc, revoked_by"
