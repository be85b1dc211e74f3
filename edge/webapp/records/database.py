"""The case store: one SQLite file in the data folder, safe under waitress's threads and a power cut.

Each request gets its own connection (kept on `g`, closed on teardown). The database runs in WAL mode
with `synchronous=FULL`, and every write is one `BEGIN IMMEDIATE ... COMMIT` transaction, so a result
is on disk before the kiosk acknowledges it and concurrent writers queue instead of failing.

Only what a screening record needs is stored: no patient identifiers, no uploaded file names, no
DICOM fields. The case reference is the clinic's own code, checked by `edge.webapp.intake.upload_checks`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

from flask import Flask, current_app, g
from flask_babel import gettext

from edge.calibration import in_refer_band
from edge.webapp.records import audit_chain

DB_FILE = "pneumoedge.sqlite3"
#: SQLite's largest row id: a larger number in a URL is no case (404), not an overflow (500).
MAX_ROWID = 2**63 - 1
SCHEMA_VERSION = 4
#: Seconds a writer waits for another thread's transaction before giving up.
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_ref TEXT,
    created_utc TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'rejected')),
    label TEXT,
    probability REAL,
    threshold REAL NOT NULL,
    reason TEXT,
    detail TEXT NOT NULL,
    quality_flags TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    runtime TEXT NOT NULL,
    input_sha256 TEXT NOT NULL,
    image_file TEXT,
    elapsed_ms REAL NOT NULL,
    confirmed_label TEXT,
    confirmed_utc TEXT
);
CREATE INDEX IF NOT EXISTS cases_case_ref ON cases (case_ref);
CREATE INDEX IF NOT EXISTS cases_created ON cases (created_utc);
CREATE TABLE IF NOT EXISTS heatmaps (
    case_id INTEGER PRIMARY KEY REFERENCES cases (id) ON DELETE CASCADE,
    png BLOB NOT NULL
);
"""

#: Version 2: personal staff logins, server-side sessions, the lockout counters and the audit log.
#: Version 4: the "uncertain: refer" band's upper edge in force when the case was scored.
_SCHEMA_V4 = "ALTER TABLE cases ADD COLUMN refer_band_upper REAL;"

_SCHEMA_V2 = """
ALTER TABLE cases ADD COLUMN confirmed_by TEXT;
CREATE TABLE IF NOT EXISTS staff (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    pin_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'staff')),
    active INTEGER NOT NULL DEFAULT 1,
    created_utc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY,
    staff_id INTEGER NOT NULL REFERENCES staff (id),
    created REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failure REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_utc TEXT NOT NULL,
    staff_id INTEGER,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    case_id INTEGER,
    old_value TEXT,
    new_value TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS audit_log_case ON audit_log (case_id);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS cases_confirm_only_assessed BEFORE UPDATE OF confirmed_label ON cases
WHEN NEW.confirmed_label IS NOT NULL AND NEW.status <> 'ok'
BEGIN SELECT RAISE(ABORT, 'a case that could not be assessed cannot be confirmed'); END;
"""

_CASE_COLUMNS = (
    "id, case_ref, created_utc, status, label, probability, threshold, refer_band_upper, reason, detail, "
    "quality_flags, "
    "model_name, model_sha256, runtime, input_sha256, image_file, elapsed_ms, confirmed_label, "
    "confirmed_utc, confirmed_by"
)


@dataclass(frozen=True)
class NewCase:
    """What scoring hands the store; `created_utc` and `id` are assigned when it is committed."""

    case_ref: str | None
    status: str
    label: str | None
    probability: float | None
    threshold: float
    refer_band_upper: float | None  # the bundle's "uncertain: refer" band at the time (None: none)
    reason: str | None
    detail: str
    quality_flags: tuple[str, ...]
    model_name: str
    model_sha256: str
    runtime: str
    input_sha256: str
    image_file: str | None
    elapsed_ms: float


@dataclass(frozen=True)
class Case(NewCase):
    """One screened upload as stored; what the history, the report and the API show.

    A NewCase plus what the store assigns: its id and time, and the clinician's confirmation.
    """

    id: int
    created_utc: str
    confirmed_label: str | None
    confirmed_utc: str | None
    confirmed_by: str | None  # the staff member who recorded the confirmed diagnosis

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Case:
        values = dict(row)
        values["quality_flags"] = tuple(json.loads(values["quality_flags"]))
        return cls(**values)

    @property
    def uncertain(self) -> bool:
        """A referral in the refer band: the result page and the report say "uncertain: refer"."""
        return in_refer_band(self.label, self.probability, self.refer_band_upper)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of a case (docs/openapi.yaml `Case`); the stored image name stays private."""
        fields = asdict(self)
        del fields["image_file"]
        fields["quality_flags"] = list(self.quality_flags)
        fields["uncertain"] = self.uncertain
        return fields


@dataclass(frozen=True)
class CaseQuery:
    """Filters for the history page, the exports and the API; None means 'any'."""

    case_ref: str | None = None
    exact_case_ref: bool = False
    date_from: date | None = None
    date_to: date | None = None  # inclusive
    status: str | None = None
    label: str | None = None
    confirmed: bool | None = None
    zone: tzinfo = timezone.utc  # the dates are days in this zone (the pages: the kiosk's own)

    def where(self) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if self.case_ref:
            if self.exact_case_ref:
                clauses.append("case_ref = ?")
                params.append(self.case_ref)
            else:
                clauses.append("instr(lower(case_ref), lower(?)) > 0")
                params.append(self.case_ref)
        if self.date_from:
            clauses.append("created_utc >= ?")
            params.append(self._utc_midnight(self.date_from))
        if self.date_to:
            clauses.append("created_utc < ?")
            params.append(self._utc_midnight(self.date_to + timedelta(days=1)))
        if self.status:
            clauses.append("status = ?")
            params.append(self.status)
        if self.label:
            clauses.append("label = ?")
            params.append(self.label)
        if self.confirmed is not None:
            clauses.append("confirmed_label IS NOT NULL" if self.confirmed else "confirmed_label IS NULL")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def _utc_midnight(self, day: date) -> str:
        """The stored (UTC) form of the moment `day` begins in the query's zone."""
        start = datetime.combine(day, datetime.min.time(), self.zone).astimezone(timezone.utc)
        return start.strftime("%Y-%m-%dT%H:%M:%S")


def utc_now() -> str:
    """ISO 8601 UTC with milliseconds and a Z: sorts as text, reads unambiguously."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def db_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / DB_FILE


def connect(path: Path | str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, synchronous=FULL."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=True)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def init_db(data_dir: Path | str) -> None:
    """Create the schema if needed; refuse a database written by a newer kiosk."""
    conn = connect(db_path(data_dir))
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{db_path(data_dir)} has schema version {version}; this kiosk knows version "
                f"{SCHEMA_VERSION}. Update the kiosk software or use another --data-dir."
            )
        if version < 1:
            conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version=1; COMMIT;")
        if version < 2:
            conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA_V2} PRAGMA user_version=2; COMMIT;")
        if version < 3:
            _chain_the_audit_log(conn)
        if version < 4:
            conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA_V4} PRAGMA user_version=4; COMMIT;")
        _restore_audit_protection(conn)
    finally:
        conn.close()


def _chain_the_audit_log(conn: sqlite3.Connection) -> None:
    """Version 3: the audit log's hash chain (edge.webapp.records.audit_chain). Entries already there are
    chained once, here, and an entry says so: their history before this update cannot be vouched for."""
    with _write(conn):
        conn.execute("ALTER TABLE audit_log ADD COLUMN prev_sha256 TEXT")
        conn.execute("ALTER TABLE audit_log ADD COLUMN row_sha256 TEXT")
        for name in audit_chain.TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        chained = audit_chain.chain_existing(conn)
        for sql in audit_chain.TRIGGERS.values():
            conn.execute(sql)
        if chained:
            last = audit_chain.head(conn)
            assert last is not None  # just chained
            detail = (
                f"{chained} entries up to #{last.id} were written before the audit log had a hash chain "
                "and were chained at this software update"
            )
            append_audit(conn, Actor(None, "kiosk software update"), audit_chain.CHAIN_START, detail=detail)
        conn.execute("PRAGMA user_version=3")


def _restore_audit_protection(conn: sqlite3.Connection) -> None:
    """Put back audit triggers someone dropped or changed, and record it in the log itself."""
    missing = audit_chain.missing_triggers(conn)
    if not missing:
        return
    with _write(conn):
        for name in missing:
            conn.execute(f"DROP TRIGGER IF EXISTS {name}")
            conn.execute(audit_chain.TRIGGERS[name])
        detail = f"found missing or changed at start and put back: {', '.join(missing)}"
        append_audit(conn, Actor(None, "kiosk start"), audit_chain.PROTECTION_RESTORED, detail=detail)


def get_db() -> sqlite3.Connection:
    """This request's connection, opened on first use."""
    if "db" not in g:
        g.db = connect(db_path(current_app.config["DATA_DIR"]))
    return g.db


def close_db(_error: BaseException | None = None) -> None:
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def init_app(app: Flask) -> None:
    """Create the data folder and schema, and close each request's connection when it ends.

    The folder and the database are the kiosk's user's alone (0700, 0600), also when an older kiosk
    made them readable to all; SQLite gives its WAL and shared-memory files the database's mode.
    """
    data_dir = Path(app.config["DATA_DIR"])
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    init_db(data_dir)
    for path in (db_path(data_dir), *data_dir.glob(f"{DB_FILE}-*")):
        path.chmod(0o600)
    # SQLite checkpoints and removes the WAL whenever its last connection closes, which would cost
    # every request two extra fsyncs; one idle connection held for the app's life prevents that.
    app.extensions["pneumoedge.db_keeper"] = sqlite3.connect(
        db_path(app.config["DATA_DIR"]), check_same_thread=False
    )
    app.teardown_appcontext(close_db)


def insert_case(
    conn: sqlite3.Connection, case: NewCase, heatmap_png: bytes | None, actor: Actor | None = None
) -> Case:
    """Commit a case (its heatmap, and who screened it in the audit log) in one transaction."""
    created = utc_now()
    with _write(conn):
        cursor = conn.execute(
            "INSERT INTO cases (case_ref, created_utc, status, label, probability, threshold, "
            "refer_band_upper, reason, detail, quality_flags, model_name, model_sha256, runtime, "
            "input_sha256, image_file, elapsed_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                case.case_ref,
                created,
                case.status,
                case.label,
                case.probability,
                case.threshold,
                case.refer_band_upper,
                case.reason,
                case.detail,
                json.dumps(list(case.quality_flags)),
                case.model_name,
                case.model_sha256,
                case.runtime,
                case.input_sha256,
                case.image_file,
                case.elapsed_ms,
            ),
        )
        case_id = int(cursor.lastrowid)
        if heatmap_png is not None:
            conn.execute("INSERT INTO heatmaps (case_id, png) VALUES (?, ?)", (case_id, heatmap_png))
        if actor is not None:
            append_audit(conn, actor, "screen", case_id, None, case.label or "CANNOT ASSESS")
    stored = get_case(conn, case_id)
    assert stored is not None  # just committed on this connection
    return stored


@dataclass(frozen=True)
class Actor:
    """Who did something: a staff member (id and name at the time), or a clinic system on the API."""

    staff_id: int | None
    name: str


class ConfirmError(ValueError):
    """A confirmation that may not be recorded; `status` and `code` for the answer, message for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def confirm_case(
    conn: sqlite3.Connection, case_id: int, label: str, actor: Actor, previous: str | None
) -> Case:
    """Record (or correct) the clinician's confirmed diagnosis, attributed, with an audit entry.

    `previous` is the confirmation the person saw when they chose: if someone else changed it in
    the meantime nothing is written (ConfirmError 409), so no correction overwrites unseen work.
    A case the quality gate refused cannot be confirmed (there is no assessed X-ray to label).
    """
    with _write(conn):
        row = conn.execute("SELECT status, confirmed_label FROM cases WHERE id = ?", (case_id,)).fetchone()
        if row is None:
            raise ConfirmError(404, "not_found", gettext("There is no case #%(id)d.", id=case_id))
        if row["status"] != "ok":
            raise ConfirmError(
                409,
                "not_assessable",
                gettext(
                    "This image could not be assessed, so no diagnosis can be recorded against it. "
                    "Screen a proper chest X-ray of the patient instead."
                ),
            )
        old = row["confirmed_label"]
        if old != previous:
            raise ConfirmError(
                409,
                "changed",
                gettext(
                    "Someone recorded %(old)s for this case meanwhile. Nothing was changed: "
                    "look at the case again before you record a diagnosis.",
                    old=gettext(old) if old else gettext("nothing"),
                ),
            )
        conn.execute(
            "UPDATE cases SET confirmed_label = ?, confirmed_utc = ?, confirmed_by = ? WHERE id = ?",
            (label, utc_now(), actor.name, case_id),
        )
        append_audit(conn, actor, "confirm" if old is None else "correct", case_id, old, label)
    case = get_case(conn, case_id)
    assert case is not None  # just written on this connection
    return case


def append_audit(
    conn: sqlite3.Connection,
    actor: Actor,
    action: str,
    case_id: int | None = None,
    old_value: str | None = None,
    new_value: str | None = None,
    detail: str | None = None,
) -> None:
    """Add one entry to the append-only, hash-chained audit log (edge.webapp.records.audit_chain).

    Inside a transaction of the caller's, it commits with the change it describes; otherwise alone.
    Either way it holds the write lock, so the next number and the previous hash cannot race.
    Never put a patient identifier here: cases are named by their number.
    """
    if conn.in_transaction:
        _append_chained(conn, actor, action, case_id, old_value, new_value, detail)
    else:
        with _write(conn):
            _append_chained(conn, actor, action, case_id, old_value, new_value, detail)


def _append_chained(
    conn: sqlite3.Connection,
    actor: Actor,
    action: str,
    case_id: int | None,
    old_value: str | None,
    new_value: str | None,
    detail: str | None,
) -> None:
    number, prev = audit_chain.next_link(conn)
    values: dict[str, Any] = {
        "id": number,
        "at_utc": utc_now(),
        "staff_id": actor.staff_id,
        "actor": actor.name,
        "action": action,
        "case_id": case_id,
        "old_value": old_value,
        "new_value": new_value,
        "detail": detail,
    }
    conn.execute(
        f"INSERT INTO audit_log ({', '.join(audit_chain.FIELDS)}, prev_sha256, row_sha256) "
        f"VALUES ({', '.join('?' * (len(audit_chain.FIELDS) + 2))})",
        (*(values[name] for name in audit_chain.FIELDS), prev, audit_chain.entry_hash(prev, values)),
    )


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at_utc: str
    staff_id: int | None
    actor: str
    action: str
    case_id: int | None
    old_value: str | None
    new_value: str | None
    detail: str | None


def audit_entries(conn: sqlite3.Connection, case_id: int | None = None, limit: int = 200) -> list[AuditEntry]:
    """Newest first; one case's entries when `case_id` is given."""
    where, params = ("WHERE case_id = ?", [case_id]) if case_id is not None else ("", [])
    rows = conn.execute(
        f"SELECT id, at_utc, staff_id, actor, action, case_id, old_value, new_value, detail FROM audit_log "
        f"{where} ORDER BY id DESC LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [AuditEntry(**dict(row)) for row in rows]


def corrected_case_ids(conn: sqlite3.Connection) -> set[int]:
    """Cases whose confirmed diagnosis was changed after it was first recorded (the audit log knows)."""
    rows = conn.execute("SELECT DISTINCT case_id FROM audit_log WHERE action = 'correct'")
    return {int(row[0]) for row in rows}


def get_case(conn: sqlite3.Connection, case_id: int) -> Case | None:
    row = conn.execute(f"SELECT {_CASE_COLUMNS} FROM cases WHERE id = ?", (case_id,)).fetchone()
    return Case.from_row(row) if row else None


def get_heatmap(conn: sqlite3.Connection, case_id: int) -> bytes | None:
    row = conn.execute("SELECT png FROM heatmaps WHERE case_id = ?", (case_id,)).fetchone()
    return bytes(row["png"]) if row else None


def has_heatmap(conn: sqlite3.Connection, case_id: int) -> bool:
    return conn.execute("SELECT 1 FROM heatmaps WHERE case_id = ?", (case_id,)).fetchone() is not None


def search_cases(
    conn: sqlite3.Connection, query: CaseQuery, limit: int, offset: int = 0
) -> tuple[list[Case], int]:
    """One page of matching cases, newest first, and how many match in all."""
    where, params = query.where()
    total = conn.execute(f"SELECT count(*) FROM cases{where}", params).fetchone()[0]
    rows = conn.execute(
        f"SELECT {_CASE_COLUMNS} FROM cases{where} ORDER BY id DESC LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    return [Case.from_row(row) for row in rows], int(total)


def iter_cases(conn: sqlite3.Connection, query: CaseQuery) -> Iterator[Case]:
    """Every matching case, oldest first, without loading them all at once (for exports)."""
    where, params = query.where()
    for row in conn.execute(f"SELECT {_CASE_COLUMNS} FROM cases{where} ORDER BY id", params):
        yield Case.from_row(row)


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One immediate transaction: the write lock is taken before reading, so writers queue, not fail."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


_write = write
