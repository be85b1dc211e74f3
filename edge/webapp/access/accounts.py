"""Staff accounts, their server-side sessions, and the lockout of repeated wrong PINs or codes.

Every person who uses the kiosk's pages logs in with their own name and PIN, so every clinical
action can be attributed (edge.webapp.records.database.append_audit). PINs are stored only as werkzeug
password hashes (scrypt). Roles: `staff` screen, view, confirm and export; `admin` also manages
staff. A session is a random token in the signed cookie whose sha256 is a row here: logging out
deletes the row, so a copied cookie stops working at once; a session also ends after a configured
idle time, after its maximum age, and when its staff member is disabled.

Names are matched the way people read them (`name_key`: Unicode NFKC, runs of spaces and tabs as
one space, case-folded), for the login and for its lockout, so "Cid  Nurse" is "CID NURSE". PINs
that are guessed first (one digit repeated, a run up or down, the most common PINs) are refused.

The lockout is race-free: an attempt is *reserved* (counted) in one SQLite write transaction before
the slow hash check, so parallel wrong PINs cannot all slip past the limit. An address is locked out
for LOCKOUT_S after MAX_FAILURES wrong PINs. A name is not locked: wrong PINs for it from other
machines make its next try from another machine wait longer each time (NAME_BACKOFF_S doubling, at
most LOCKOUT_S), and tries on the kiosk's own screen (loopback) are never held back by the name, so
nobody can keep a named administrator from logging in at the kiosk.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import secrets
import sqlite3
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from flask_babel import gettext
from werkzeug.security import check_password_hash, generate_password_hash

from edge.webapp.records.database import Actor, append_audit, utc_now, write

ROLES = ("staff", "admin")
PIN_MIN, PIN_MAX = 6, 12
NAME_MAX = 40
_NAME = re.compile(r"^[^\W\d_][\w .'-]*$")
#: Wrong PINs (or access codes) allowed per address before a lockout of LOCKOUT_S, and per name
#: before each further try from another machine waits NAME_BACKOFF_S, doubling, at most LOCKOUT_S.
MAX_FAILURES = 5
LOCKOUT_S = 60.0
NAME_BACKOFF_S = 2.0
#: A name's wrong PINs are forgotten after this long without one.
NAME_FORGET_S = 3600.0
#: Common 6-digit PINs that the repeat and run rules (`weak_pin`) do not already catch: from the most
#: frequent 6-digit PINs reported by Wang et al., "Understanding Human-chosen PINs: Characteristics,
#: Distribution and Security" (ACM AsiaCCS 2017), and Markert et al., "This PIN Can Be Easily
#: Guessed" (IEEE S&P 2020): mirrored runs, paired digits and keypad lines.
COMMON_PINS = frozenset(
    {
        "112233", "123321", "321123", "111222", "123654", "789456", "456123", "147258", "258369",
        "147369", "159753", "159357", "147852", "741852", "963852", "369258", "852456", "102030",
    }
)  # fmt: skip
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


def display_name(name: str) -> str:
    """A name as stored and shown: Unicode NFKC (full-width and composed letters as usual ones),
    leading, trailing and repeated spaces, tabs and newlines as one space; case as typed."""
    return " ".join(unicodedata.normalize("NFKC", name).split())


def name_key(name: str) -> str:
    """What two names must share to be the same login: the display name, case-folded."""
    return display_name(name).casefold()


def check_name(name: str) -> str:
    value = display_name(name)
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
    weakness = weak_pin(pin)
    if weakness is not None:
        raise AccountError(weakness)
    return pin


def weak_pin(pin: str) -> str | None:
    """Why a PIN of digits is among the first ones guessed, in plain words; None when it is not."""
    steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
    for period in (1, 2, 3):
        if len(pin) >= 2 * period and pin == (pin[:period] * len(pin))[: len(pin)]:
            return gettext(
                "This PIN repeats the same digits (like 111111 or 121212), so it is guessed first. "
                "Choose digits with no pattern."
            )
    if steps in ({1}, {-1}):
        return gettext(
            "This PIN is a run of digits up or down (like 123456 or 987654), so it is guessed first. "
            "Choose digits with no pattern."
        )
    if pin in COMMON_PINS:
        return gettext("This PIN is one of the most common PINs, so it is guessed first. Choose another one.")
    return None


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(gettext("A role is staff or admin."))
    return role


def count_staff(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM staff").fetchone()[0])


def list_staff(conn: sqlite3.Connection) -> list[Staff]:
    rows = conn.execute("SELECT id, name, role, active FROM staff ORDER BY name").fetchall()
    return [_staff(row) for row in rows]


def find_staff(conn: sqlite3.Connection, name: str) -> sqlite3.Row | None:
    """The login whose name is `name` as people read it (`name_key`), with its PIN hash; None if none.

    Compared in Python, not by SQLite's ASCII-only NOCASE: a kiosk has tens of logins, not thousands.
    """
    key = name_key(name)
    rows = conn.execute("SELECT id, name, role, active, pin_hash FROM staff ORDER BY id").fetchall()
    return next((row for row in rows if name_key(row["name"]) == key), None)


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
        same = find_staff(conn, name)
        if same is not None:
            raise AccountError(
                gettext("There is already a login named %(name)s; choose another name.", name=same["name"])
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
    row = find_staff(conn, name)
    if row is None:
        return add_staff(conn, name, pin, "admin", actor)
    pin_hash = generate_password_hash(pin)
    with write(conn):
        conn.execute(
            "UPDATE staff SET pin_hash = ?, role = 'admin', active = 1 WHERE id = ?", (pin_hash, row["id"])
        )
        append_audit(conn, actor, "staff_pin_reset", new_value=f"{row['name']} (admin)")
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
    """Too many wrong attempts from this address or for this name; try again in `retry_after_s`."""

    def __init__(self, key: str, retry_after_s: float = LOCKOUT_S) -> None:
        super().__init__(key)
        self.retry_after_s = retry_after_s


def name_wait_s(failures: int) -> float:
    """How long after its last wrong PIN a name's next try from another machine must wait."""
    if failures < MAX_FAILURES:
        return 0.0
    return min(LOCKOUT_S, NAME_BACKOFF_S * 2 ** (failures - MAX_FAILURES))


def reserve_attempt(
    conn: sqlite3.Connection, keys: Sequence[str], now: float | None = None, backoff_keys: Sequence[str] = ()
) -> None:
    """Count one attempt against every key in one write transaction; LockedOutError when any is spent.

    `keys` (addresses) lock out for LOCKOUT_S after MAX_FAILURES; `backoff_keys` (names) make each
    further try wait longer (`name_wait_s`). Done before the (slow) PIN check, so at most
    MAX_FAILURES attempts per address are ever checked within LOCKOUT_S, however many arrive at
    once. A success calls `clear_attempts`.
    """
    now = time.time() if now is None else now
    with write(conn):
        if conn.execute("SELECT count(*) FROM login_failures").fetchone()[0] > 10_000:
            conn.execute("DELETE FROM login_failures WHERE last_failure < ?", (now - NAME_FORGET_S,))
        limits = [(key, _address_wait, LOCKOUT_S) for key in keys]
        limits += [(key, name_wait_s, NAME_FORGET_S) for key in backoff_keys]
        for key, wait, _ in limits:
            row = conn.execute(
                "SELECT failures, last_failure FROM login_failures WHERE key = ?", (key,)
            ).fetchone()
            if row and now - row["last_failure"] < wait(row["failures"]):
                raise LockedOutError(key, row["last_failure"] + wait(row["failures"]) - now)
        for key, _, forget_s in limits:
            conn.execute(
                "INSERT INTO login_failures (key, failures, last_failure) VALUES (?, 1, ?) "
                "ON CONFLICT (key) DO UPDATE SET "
                "failures = CASE WHEN ? - last_failure >= ? THEN 1 ELSE failures + 1 END, last_failure = ?",
                (key, now, now, forget_s, now),
            )


def _address_wait(failures: int) -> float:
    return LOCKOUT_S if failures >= MAX_FAILURES else 0.0


def locked_for(conn: sqlite3.Connection, keys: Sequence[str], now: float | None = None) -> float:
    """Seconds until the lockout of any of the address `keys` ends (0: none is locked out). Only reads.

    Checked before any credential is looked at, so a locked-out client learns nothing, not even
    from the right code: it gets the same refusal, with this as its Retry-After.
    """
    now = time.time() if now is None else now
    waits = [
        row["last_failure"] + _address_wait(row["failures"]) - now
        for key in keys
        for row in conn.execute("SELECT failures, last_failure FROM login_failures WHERE key = ?", (key,))
    ]
    return max([0.0, *waits])


def clear_attempts(conn: sqlite3.Connection, keys: Sequence[str]) -> None:
    with write(conn):
        conn.executemany("DELETE FROM login_failures WHERE key = ?", [(key,) for key in keys])


def authenticate(
    conn: sqlite3.Connection, name: str, pin: str, client: str, own_screen: bool = False
) -> Staff | None:
    """The active staff member with this name and PIN, or None; LockedOutError after too many tries.

    `own_screen`: the try comes from the kiosk's own screen (loopback), which the name's back-off
    never holds back; the address's lockout still applies there.
    """
    address, name_counter = f"address:{client}", f"name:{name_key(name)}"
    reserve_attempt(conn, [address], backoff_keys=[] if own_screen else [name_counter])
    row = find_staff(conn, name)
    # A hash is checked even for an unknown name, so the time taken does not tell names apart.
    pin_hash = row["pin_hash"] if row else _dummy_hash()
    if check_password_hash(pin_hash, pin) and row is not None and row["active"]:
        clear_attempts(conn, [address, name_counter])
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
