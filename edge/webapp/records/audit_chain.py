"""The audit log's hash chain: every entry carries the sha256 of the entry before it and of itself.

The triggers refuse UPDATE and DELETE, but anyone holding the database file can drop a trigger or
edit the file. The chain makes that visible: entry N stores `prev_sha256` (entry N-1's hash) and
`row_sha256`, the sha256 of that previous hash and entry N's canonical content. Changing, replacing
or removing an entry breaks the chain at that entry (`verify` names it); removing entries from the
end leaves SQLite's AUTOINCREMENT counter ahead of the last entry. Rewriting the whole chain after
an edit is possible for someone with the file, so every export carries the head (the newest entry's
number and hash): a later database that no longer holds that head was rewritten.

The insert trigger takes only the next entry of the chain: the next number (so INSERT OR REPLACE
and reused numbers are refused) after the current head's hash.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
#: The columns an entry's hash covers, in this order.
FIELDS = ("id", "at_utc", "staff_id", "actor", "action", "case_id", "old_value", "new_value", "detail")
#: The action of the entry that records when existing entries were chained (a kiosk update).
CHAIN_START = "audit_chain_start"
#: The action of the entry that records protection triggers found missing and put back at a start.
PROTECTION_RESTORED = "audit_protection_restored"

TRIGGERS = {
    "audit_log_no_update": """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    "audit_log_no_delete": """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    "audit_log_chain_only": f"""CREATE TRIGGER audit_log_chain_only BEFORE INSERT ON audit_log
WHEN NEW.id IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM sqlite_sequence WHERE name = 'audit_log')
  OR NEW.prev_sha256 IS NOT coalesce(
    (SELECT row_sha256 FROM audit_log ORDER BY id DESC LIMIT 1), '{GENESIS}')
  OR NEW.row_sha256 IS NULL OR length(NEW.row_sha256) <> 64
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: only the next entry of its chain is taken'); END""",
}


@dataclass(frozen=True)
class Head:
    """The newest entry: its number and hash. What an export records."""

    id: int
    sha256: str

    def __str__(self) -> str:
        return f"{self.id}:{self.sha256}"


@dataclass(frozen=True)
class ChainReport:
    """What `verify` found: intact, or the first broken entry and why (plain words)."""

    entries: int
    head: Head | None
    broken_at: int | None = None  # the first entry that does not check out
    problem: str | None = None
    chained_through: int | None = None  # entries up to this one were chained at an update, not when written
    missing_triggers: tuple[str, ...] = ()

    @property
    def intact(self) -> bool:
        return self.problem is None and not self.missing_triggers

    def summary(self) -> str:
        """One line for people and the command line (English: the log itself is English)."""
        if self.problem is not None:
            return f"BROKEN at entry #{self.broken_at}: {self.problem}"
        if self.missing_triggers:
            missing = ", ".join(self.missing_triggers)
            return f"chain intact, but its protection is missing: {missing} dropped or changed"
        if self.head is None:
            return "intact: no entries yet"
        return f"intact: {self.entries} entries, head #{self.head.id} sha256 {self.head.sha256}"


def canonical(values: dict[str, Any]) -> bytes:
    """An entry's content as hashed: a compact JSON array of FIELDS (types kept: 5 is not "5")."""
    return _canonical([values[name] for name in FIELDS])


def entry_hash(prev_sha256: str, values: dict[str, Any]) -> str:
    return _hash(prev_sha256, canonical(values))


def _canonical(fields: list[Any]) -> bytes:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()


def _hash(prev_sha256: str, content: bytes) -> str:
    return hashlib.sha256(prev_sha256.encode("ascii") + b"\n" + content).hexdigest()


def next_link(conn: sqlite3.Connection) -> tuple[int, str]:
    """The number and previous hash the next entry must have (call inside the write transaction)."""
    seq = _sequence(conn)
    last = conn.execute("SELECT row_sha256 FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    return seq + 1, (last[0] if last and last[0] else GENESIS)


def head(conn: sqlite3.Connection) -> Head | None:
    row = conn.execute("SELECT id, row_sha256 FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    return Head(int(row[0]), str(row[1])) if row else None


def chain_existing(conn: sqlite3.Connection) -> int:
    """Hash the entries written before the chain existed, oldest first; return how many (the
    schema migration, inside its transaction, with the update trigger dropped)."""
    prev = GENESIS
    rows = conn.execute(f"SELECT {', '.join(FIELDS)} FROM audit_log ORDER BY id").fetchall()
    for row in rows:
        values = dict(zip(FIELDS, tuple(row), strict=True))
        digest = entry_hash(prev, values)
        conn.execute(
            "UPDATE audit_log SET prev_sha256 = ?, row_sha256 = ? WHERE id = ?", (prev, digest, values["id"])
        )
        prev = digest
    return len(rows)


def missing_triggers(conn: sqlite3.Connection) -> tuple[str, ...]:
    """The protection triggers that are not in the schema (dropped, or changed into something else)."""
    present = {
        name: sql
        for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    }
    return tuple(name for name, sql in TRIGGERS.items() if present.get(name) != sql)


def verify(conn: sqlite3.Connection) -> ChainReport:
    """Walk the whole chain, oldest first, and report the first entry that does not check out."""
    start = _start_entry(conn)
    before = {"chained_through": start - 1 if start else None, "missing_triggers": missing_triggers(conn)}
    prev_hash, prev_id, count = GENESIS, 0, 0
    cursor = conn.cursor()
    cursor.row_factory = None  # plain tuples: this loop runs once per entry of the whole log
    for *fields, prev_sha256, row_sha256 in cursor.execute(
        f"SELECT {', '.join(FIELDS)}, prev_sha256, row_sha256 FROM audit_log ORDER BY id"
    ):
        number = int(fields[0])
        count += 1
        gaps_allowed = start is not None and number <= start  # before the chain began: not vouched for
        if row_sha256 is None:
            problem: str | None = "it has no hash: it was added outside the kiosk"
        elif number != prev_id + 1 and not gaps_allowed:
            problem = f"entry {_span(prev_id + 1, number - 1)} before it was deleted"
        elif prev_sha256 != prev_hash:
            problem = (
                "it does not follow the entry before it: an entry was replaced, removed or inserted here"
            )
        elif _hash(prev_hash, _canonical(fields)) != row_sha256:
            problem = "its content was changed after it was written"
        else:
            prev_hash, prev_id = row_sha256, number
            continue
        return ChainReport(count, head(conn), number, problem, **before)
    tip = Head(prev_id, prev_hash) if count else None
    seq = _sequence(conn)
    if seq > prev_id:
        problem = f"entry {_span(prev_id + 1, seq)} was deleted from the end of the log"
        return ChainReport(count, tip, prev_id + 1, problem, **before)
    return ChainReport(count, tip, **before)


def _span(first: int, last: int) -> str:
    return f"#{first}" if first == last else f"#{first} to #{last}"


def _sequence(conn: sqlite3.Connection) -> int:
    """The highest entry number ever given (SQLite's AUTOINCREMENT counter: deleting does not lower it)."""
    row = conn.execute(
        "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'audit_log'"
    ).fetchone()
    return int(row[0])


def _start_entry(conn: sqlite3.Connection) -> int | None:
    """The entry that chained the log's older entries at an update (None: chained since the first)."""
    row = conn.execute("SELECT min(id) FROM audit_log WHERE action = ?", (CHAIN_START,)).fetchone()
    return int(row[0]) if row and row[0] is not None else None
