"""Staff accounts, their server-side sessions, and the lockout of repeated wrong PINs or codes.

Every person who uses the kiosk's pages logs in with their own name and PIN, so every clinical
action can be attributed (edge.webapp.store.append_audit). PINs are stored only as werkzeug
password hashes (scrypt). Roles: `staff` screen, view, confirm and export; `admin` also manages
staff. A session is a random token in the signed cookie whose sha256 is a row here: logging out
deletes the row, so a copied cookie stops working at once; a session also ends after a configured
idle time, after its maximum age, and when its staff member is disabled.

The lockout is race-free: an attempt is *reserved* (counted) in one SQLite write transaction before
the slow hash check, so parallel wrong PINs cannot all slip past the limit.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass

from flask_babel import gettext
from werkzeug.security import check_password_hash, generate_password_hash

from edge.webapp.store import Actor, append_audit, utc_now, write

ROLES = ("staff", "admin")
PIN_MIN, PIN_MAX = 6, 12
NAME_MAX = 40
_NAME = re.compile(r"^[^\W\d_][\w .'-]*$")
#: Wrong PINs (or access codes) allowed per address and per name before a lockout of LOCKOUT_S.
MAX_FAILURES = 5
LOCKOUT_S = 60.0
#: A session's last-seen time is written at most this often (each write is an fsync on the SD card).
TOUCH_EVERY_S = 15.0


class AccountError(ValueError):
    """A name, PIN or role that may not be used; the message says what would be valid."""


@dataclass(frozen=True)
class Staff:
    id: int
    name: str
    role: str
    active: bool

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def actor(self) -> Actor:
        return Actor(self.id, self.name)


def pin_rule() -> str:
    """What a valid PIN is, in the page's language (English outside a request)."""
    return gettext("%(min)d to %(max)d digits", min=PIN_MIN, max=PIN_MAX)


def check_name(name: str) -> str:
    value = " ".join(name.split())
    if not 2 <= len(value) <= NAME_MAX or not _NAME.match(value):
        raise AccountError(
            gettext(
                "A staff name has 2 to %(max)d letters, spaces, dots, apostrophes or hyphens.", max=NAME_MAX
            )
        )
    return value


def check_pin(pin: str) -> str:
    if not (pin.isascii() and pin.isdigit() and PIN_MIN <= len(pin) <= PIN_MAX):
        raise AccountError(gettext("A PIN has %(rule)s.", rule=pin_rule()))
    return pin


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(gettext("A role is staff or admin."))
    return role


def count_staff(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM staff").fetchone()[0])


def list_staff(conn: sqlite3.Connection) -> list[Staff]:
    rows = conn.execute("SELECT id, name, role, active FROM staff ORDER BY name").fetchall()
    return [_staff(row) for row in rows]


def get_staff(conn: sqlite3.Connection, staff_id: int) -> Staff | None:
    row = conn.execute("SELECT id, name, role, active FROM staff WHERE id = ?", (staff_id,)).fetchone()
    return _staff(row) if row else None


def add_staff(
    conn: sqlite3.Connection, name: str, pin: str, role: str, actor: Actor, only_if_none: bool = False
) -> Staff:
    """Create a login; `only_if_none`: only as the very first one (the first-run set-up)."""
    name, pin, role = check_name(name), check_pin(pin), check_role(role)
    pin_hash = generate_password_hash(pin)  # slow on purpose: outside the write lock
    with write(conn):
        if only_if_none and count_staff(conn):
            raise AccountError(gettext("Staff logins exist already: log in, or ask an administrator."))
        if conn.execute("SELECT 1 FROM staff WHERE name = ?", (name,)).fetchone():
            raise AccountError(
                gettext("There is already a login named %(name)s; choose another name.", name=name)
            )
        cursor = conn.execute(
            "INSERT INTO staff (name, pin_hash, role, active, created_utc) VALUES (?, ?, ?, 1, ?)",
            (name, pin_hash, role, utc_now()),
        )
        staff = Staff(int(cursor.lastrowid), name, role, True)
        append_audit(conn, actor, "staff_add", new_value=f"{name} ({role})")
    return staff


def provision_admin(conn: sqlite3.Connection, name: str, pin: str) -> Staff:
    """The command line's `--admin NAME`: create that administrator, or reset its PIN and enable it."""
    name, pin = check_name(name), check_pin(pin)
    actor = Actor(None, "provisioning (command line)")
    row = conn.execute("SELECT id FROM staff WHERE name = ?", (name,)).fetchone()
    if row is None:
        return add_staff(conn, name, pin, "admin", actor)
    pin_hash = generate_password_hash(pin)
    with write(conn):
        conn.execute(
            "UPDATE staff SET pin_hash = ?, role = 'admin', active = 1 WHERE id = ?", (pin_hash, row["id"])
        )
        append_audit(conn, actor, "staff_pin_reset", new_value=f"{name} (admin)")
    staff = get_staff(conn, int(row["id"]))
    assert staff is not None
    return staff


def set_pin(conn: sqlite3.Connection, staff_id: int, pin: str, actor: Actor) -> None:
    pin_hash = generate_password_hash(check_pin(pin))
    with write(conn):
        staff = _existing(conn, staff_id)
        conn.execute("UPDATE staff SET pin_hash = ? WHERE id = ?", (pin_hash, staff_id))
        conn.execute("DELETE FROM sessions WHERE staff_id = ?", (staff_id,))
        append_audit(conn, actor, "staff_pin_reset", new_value=staff.name)


def set_active(conn: sqlite3.Connection, staff_id: int, active: bool, actor: Actor) -> None:
    """Enable or disable a login; disabling ends its sessions. The last active admin stays."""
    with write(conn):
        staff = _existing(conn, staff_id)
        if not active and staff.is_admin:
            admins = conn.execute(
                "SELECT count(*) FROM staff WHERE role = 'admin' AND active = 1"
            ).fetchone()[0]
            if admins <= 1:
                raise AccountError(gettext("This is the last active administrator; add another one first."))
        conn.execute("UPDATE staff SET active = ? WHERE id = ?", (int(active), staff_id))
        if not active:
            conn.execute("DELETE FROM sessions WHERE staff_id = ?", (staff_id,))
        append_audit(
            conn,
            actor,
            "staff_enable" if active else "staff_disable",
            old_value="active" if staff.active else "disabled",
            new_value=f"{'active' if active else 'disabled'}: {staff.name}",
        )


class LockedOutError(Exception):
    """Too many wrong attempts from this address or for this name; wait LOCKOUT_S seconds."""


def reserve_attempt(conn: sqlite3.Connection, keys: list[str], now: float | None = None) -> None:
    """Count one attempt against every key in one write transaction; LockedOutError when any is spent.

    Done before the (slow) PIN check, so at most MAX_FAILURES attempts per key are ever checked
    within LOCKOUT_S, however many arrive at once. A success calls `clear_attempts`.
    """
    now = time.time() if now is None else now
    with write(conn):
        if len(keys) and conn.execute("SELECT count(*) FROM login_failures").fetchone()[0] > 10_000:
            conn.execute("DELETE FROM login_failures WHERE last_failure < ?", (now - LOCKOUT_S,))
        for key in keys:
            row = conn.execute(
                "SELECT failures, last_failure FROM login_failures WHERE key = ?", (key,)
            ).fetchone()
            if row and row["failures"] >= MAX_FAILURES and now - row["last_failure"] < LOCKOUT_S:
                raise LockedOutError(key)
        for key in keys:
            conn.execute(
                "INSERT INTO login_failures (key, failures, last_failure) VALUES (?, 1, ?) "
                "ON CONFLICT (key) DO UPDATE SET "
                "failures = CASE WHEN ? - last_failure >= ? THEN 1 ELSE failures + 1 END, last_failure = ?",
                (key, now, now, LOCKOUT_S, now),
            )


def locked_for(conn: sqlite3.Connection, keys: list[str], now: float | None = None) -> float:
    """Seconds until the lockout of any of `keys` ends (0: none is locked out). Only reads.

    Checked before any credential is looked at, so a locked-out client learns nothing, not even
    from the right code: it gets the same refusal, with this as its Retry-After.
    """
    now = time.time() if now is None else now
    waits = [
        LOCKOUT_S - (now - row["last_failure"])
        for key in keys
        for row in conn.execute("SELECT failures, last_failure FROM login_failures WHERE key = ?", (key,))
        if row["failures"] >= MAX_FAILURES
    ]
    return max([0.0, *waits])


def clear_attempts(conn: sqlite3.Connection, keys: list[str]) -> None:
    with write(conn):
        conn.executemany("DELETE FROM login_failures WHERE key = ?", [(key,) for key in keys])


def login_keys(client: str, name: str) -> list[str]:
    return [f"address:{client}", f"name:{name.strip().lower()}"]


def authenticate(conn: sqlite3.Connection, name: str, pin: str, client: str) -> Staff | None:
    """The active staff member with this name and PIN, or None; LockedOutError after too many tries."""
    keys = login_keys(client, name)
    reserve_attempt(conn, keys)
    row = conn.execute(
        "SELECT id, name, role, active, pin_hash FROM staff WHERE name = ?", (" ".join(name.split()),)
    ).fetchone()
    # A hash is checked even for an unknown name, so the time taken does not tell names apart.
    pin_hash = row["pin_hash"] if row else _dummy_hash()
    if check_password_hash(pin_hash, pin) and row is not None and row["active"]:
        clear_attempts(conn, keys)
        return _staff(row)
    return None


def open_session(conn: sqlite3.Connection, staff: Staff) -> str:
    """A new session for `staff`; the returned token goes in the signed cookie, its hash stays here."""
    token = secrets.token_urlsafe(32)
    now = time.time()
    with write(conn):
        conn.execute(
            "INSERT INTO sessions (token_sha256, staff_id, created, last_seen) VALUES (?, ?, ?, ?)",
            (_digest(token), staff.id, now, now),
        )
        conn.execute("DELETE FROM sessions WHERE last_seen < ?", (now - 7 * 86400,))  # long-gone ones
    return token


def session_staff(
    conn: sqlite3.Connection,
    token: str,
    idle_s: float,
    max_age_s: float,
    seen: dict[str, float] | None = None,
) -> Staff | None:
    """Who holds this session, or None when it was closed, idled out, aged out or the login disabled.

    The stored last-seen time is written at most every TOUCH_EVERY_S (each write is an fsync), so
    it can be that much behind; `seen`, the kiosk's in-memory record of each session's latest
    request, makes the idle limit exact while the kiosk runs (after a restart only the stored
    time is known). Idle means: more than `idle_s` seconds since the session's latest request.
    """
    digest = _digest(token)
    row = conn.execute(
        "SELECT s.created, s.last_seen, st.id, st.name, st.role, st.active FROM sessions s "
        "JOIN staff st ON st.id = s.staff_id WHERE s.token_sha256 = ?",
        (digest,),
    ).fetchone()
    if row is None:
        return None
    seen = {} if seen is None else seen
    now = time.time()
    last_seen = max(row["last_seen"], seen.get(digest, 0.0))
    if not row["active"] or now - last_seen > idle_s or now - row["created"] > max_age_s:
        seen.pop(digest, None)
        close_session(conn, token)
        return None
    seen[digest] = now
    if now - row["last_seen"] > min(TOUCH_EVERY_S, idle_s / 4):
        with write(conn):
            conn.execute("UPDATE sessions SET last_seen = ? WHERE token_sha256 = ?", (now, digest))
    return _staff(row)


def close_session(conn: sqlite3.Connection, token: str) -> None:
    with write(conn):
        conn.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_digest(token),))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _staff(row: sqlite3.Row) -> Staff:
    return Staff(int(row["id"]), str(row["name"]), str(row["role"]), bool(row["active"]))


def _existing(conn: sqlite3.Connection, staff_id: int) -> Staff:
    staff = get_staff(conn, staff_id)
    if staff is None:
        raise AccountError(gettext("There is no staff login #%(id)d.", id=staff_id))
    return staff


@functools.cache
def _dummy_hash() -> str:
    return generate_password_hash(secrets.token_hex(8))
