"""The audit log's hash chain: every way of altering it that the triggers cannot stop is found by
`python -m edge audit-verify`, the audit page says so, and every export carries the chain head."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import sqlite3
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from edge.__main__ import main
from edge.webapp.records import audit_chain, database, fhir

from .helpers import NURSE, audit_rows, post_file

BEA, ADA = database.Actor(7, "Bea Nurse"), database.Actor(8, "Ada Mensah")
ROW = ", ".join("?" * (len(audit_chain.FIELDS) + 2))  # an audit_log row's placeholders
DROP_TRIGGERS = "; ".join(f"DROP TRIGGER {name}" for name in audit_chain.TRIGGERS)


@pytest.fixture
def kiosk(tmp_path: Path) -> Path:
    """A data folder whose audit log has six entries; entry 3 is Bea's PNEUMONIA confirmation."""
    database.init_db(tmp_path)
    with contextlib.closing(database.connect(database.db_path(tmp_path))) as conn:
        database.append_audit(conn, BEA, "login")
        database.append_audit(conn, BEA, "screen", 1, None, "PNEUMONIA")
        database.append_audit(conn, BEA, "confirm", 1, None, "PNEUMONIA")
        database.append_audit(conn, BEA, "view_report", 1)
        database.append_audit(conn, ADA, "login")
        database.append_audit(conn, ADA, "view_result", 1)
    return tmp_path


@contextlib.contextmanager
def raw(data_dir: Path) -> Iterator[sqlite3.Connection]:
    """What someone holding the database file does, with sqlite3 and no kiosk code, committed."""
    conn = sqlite3.connect(database.db_path(data_dir), isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def verify(data_dir: Path, capsys: pytest.CaptureFixture[str], *expect: str) -> tuple[int, str]:
    status = main(["audit-verify", "--data-dir", str(data_dir), *(f"--expect={e}" for e in expect)])
    return status, capsys.readouterr().out


def forged(values: dict[str, object], prev: str) -> tuple[object, ...]:
    """A row as a forger who knows the hash rule writes it: its own hash made right."""
    return (*values.values(), prev, audit_chain.entry_hash(prev, values))


def row_values(conn: sqlite3.Connection, number: int) -> dict[str, object]:
    row = conn.execute(
        f"SELECT {', '.join(audit_chain.FIELDS)} FROM audit_log WHERE id = ?", (number,)
    ).fetchone()
    return dict(zip(audit_chain.FIELDS, row, strict=True))


def test_an_untouched_log_is_intact(kiosk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = verify(kiosk, capsys)
    assert status == 0 and "audit log intact: 6 entries, head #6 sha256 " in out
    rows = audit_rows(kiosk)
    assert rows[0]["prev_sha256"] == audit_chain.GENESIS
    assert all(later["prev_sha256"] == earlier["row_sha256"] for earlier, later in itertools.pairwise(rows))


def test_insert_or_replace_and_a_reused_number_are_refused(kiosk: Path) -> None:
    """The issue's attack: INSERT OR REPLACE turned Bea's PNEUMONIA into Ada's NORMAL."""
    with raw(kiosk) as conn:
        for sql in (
            "INSERT OR REPLACE INTO audit_log (id, at_utc, actor, action, case_id, new_value) "
            "VALUES (3, '2026-01-01T00:00:00.000Z', 'Ada Mensah', 'confirm', 1, 'NORMAL')",
            "REPLACE INTO audit_log SELECT * FROM audit_log WHERE id = 3",
            "INSERT INTO audit_log (at_utc, actor, action) VALUES ('2026-01-01', 'x', 'login')",  # no number
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(sql)
        assert conn.execute("SELECT actor, new_value FROM audit_log WHERE id = 3").fetchone() == (
            "Bea Nurse",
            "PNEUMONIA",
        )


def test_an_entry_edited_after_dropping_the_triggers_is_found(
    kiosk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with raw(kiosk) as conn:
        conn.executescript(DROP_TRIGGERS)
        conn.execute("UPDATE audit_log SET actor = 'Ada Mensah', new_value = 'NORMAL' WHERE id = 3")
    status, out = verify(kiosk, capsys)
    assert status == 1
    assert "BROKEN at entry #3: its content was changed after it was written" in out


def test_an_entry_rewritten_with_its_own_hash_recomputed_breaks_the_next_link(
    kiosk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with raw(kiosk) as conn:
        conn.executescript(DROP_TRIGGERS)
        values = row_values(conn, 3) | {"actor": "Ada Mensah", "new_value": "NORMAL"}
        prev = conn.execute("SELECT prev_sha256 FROM audit_log WHERE id = 3").fetchone()[0]
        conn.execute(
            "UPDATE audit_log SET actor = ?, new_value = ?, row_sha256 = ? WHERE id = 3",
            ("Ada Mensah", "NORMAL", audit_chain.entry_hash(prev, values)),
        )
    status, out = verify(kiosk, capsys)
    assert status == 1 and "BROKEN at entry #4: it does not follow the entry before it" in out


def test_a_replaced_entry_is_found(kiosk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with raw(kiosk) as conn:
        conn.executescript(DROP_TRIGGERS)
        values = row_values(conn, 3) | {"actor": "Ada Mensah", "staff_id": 8, "new_value": "NORMAL"}
        prev = conn.execute("SELECT prev_sha256 FROM audit_log WHERE id = 3").fetchone()[0]
        conn.execute(
            "INSERT OR REPLACE INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", forged(values, prev)
        )
        assert conn.execute("SELECT actor FROM audit_log WHERE id = 3").fetchone()[0] == "Ada Mensah"
    status, out = verify(kiosk, capsys)
    assert status == 1 and "BROKEN at entry #4: it does not follow the entry before it" in out


def test_a_deleted_entry_is_found(kiosk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with raw(kiosk) as conn:
        conn.executescript(DROP_TRIGGERS)
        conn.execute("DELETE FROM audit_log WHERE id = 3")
    status, out = verify(kiosk, capsys)
    assert status == 1 and "BROKEN at entry #4: entry #3 before it was deleted" in out


def test_a_deleted_entry_whose_successors_were_renumbered_and_rehashed_is_found(
    kiosk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A forger who deletes #3 and rewrites #4-#6 as #3-#5 with good hashes: the counter remembers 6."""
    with raw(kiosk) as conn:
        conn.executescript(DROP_TRIGGERS)
        later = [row_values(conn, n) for n in (4, 5, 6)]
        prev = conn.execute("SELECT row_sha256 FROM audit_log WHERE id = 2").fetchone()[0]
        conn.execute("DELETE FROM audit_log WHERE id >= 3")
        for number, values in enumerate(later, start=3):
            row = forged(values | {"id": number}, prev)
            conn.execute(f"INSERT INTO audit_log VALUES ({ROW})", row)
            prev = str(row[-1])
    status, out = verify(kiosk, capsys)
    assert status == 1 and "BROKEN at entry #6: entry #6 was deleted from the end of the log" in out


def test_a_log_rewritten_from_scratch_no_longer_holds_an_exported_head(
    kiosk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with raw(kiosk) as conn:
        exported = audit_chain.head(conn)
        conn.executescript(DROP_TRIGGERS)
        rows = [row_values(conn, n) for n in range(1, 7)]
        rows[2] |= {"actor": "Ada Mensah", "new_value": "NORMAL"}
        conn.execute("DELETE FROM audit_log")
        prev = audit_chain.GENESIS
        for values in rows:
            row = forged(values, prev)
            conn.execute(f"INSERT INTO audit_log VALUES ({ROW})", row)
            prev = str(row[-1])
        conn.executescript(";".join(audit_chain.TRIGGERS.values()))
    assert verify(kiosk, capsys)[0] == 0  # a perfect forgery of the chain itself...
    status, out = verify(kiosk, capsys, str(exported))
    assert (
        status == 1 and f"no longer holds entry #6 with sha256 {exported.sha256}" in out
    )  # ...but not of the export


def test_dropped_triggers_alone_are_reported_and_put_back_with_an_entry_at_the_next_start(
    kiosk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with raw(kiosk) as conn:
        conn.execute("DROP TRIGGER audit_log_no_delete")
    status, out = verify(kiosk, capsys)
    assert status == 1 and "its protection is missing: audit_log_no_delete dropped" in out
    database.init_db(kiosk)  # the kiosk starts
    assert audit_rows(kiosk)[-1]["action"] == audit_chain.PROTECTION_RESTORED
    assert "audit_log_no_delete" in audit_rows(kiosk)[-1]["detail"]
    assert verify(kiosk, capsys)[0] == 0


def test_a_database_from_before_the_chain_is_chained_once_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with raw(tmp_path) as conn:  # schema 2, as the previous release left it
        conn.executescript(f"BEGIN; {database._SCHEMA} {database._SCHEMA_V2} PRAGMA user_version=2; COMMIT;")
        for actor, action in (("Bea Nurse", "login"), ("Bea Nurse", "confirm"), ("Ada Mensah", "login")):
            conn.execute(
                "INSERT INTO audit_log (at_utc, actor, action) VALUES ('2026-01-01T00:00:00.000Z', ?, ?)",
                (actor, action),
            )
    database.init_db(tmp_path)
    database.init_db(tmp_path)  # a second start changes nothing
    rows = audit_rows(tmp_path)
    assert [(r["actor"], r["action"]) for r in rows[:3]] == [
        ("Bea Nurse", "login"),
        ("Bea Nurse", "confirm"),
        ("Ada Mensah", "login"),
    ]
    assert [r["action"] for r in rows[3:]] == [audit_chain.CHAIN_START]
    assert rows[3]["detail"].startswith(
        "3 entries up to #3 were written before the audit log had a hash chain"
    )
    status, out = verify(tmp_path, capsys)
    assert status == 0 and "entries up to #3 were chained when the kiosk was updated" in out


def test_writers_on_many_threads_keep_one_chain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database.init_db(tmp_path)

    def writer(k: int) -> None:
        with contextlib.closing(database.connect(database.db_path(tmp_path))) as conn:
            for n in range(25):
                database.append_audit(conn, BEA, "view_result", k * 100 + n)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    status, out = verify(tmp_path, capsys)
    assert status == 0 and "intact: 100 entries" in out


def test_the_audit_page_says_whether_the_chain_is_intact(
    client: FlaskClient, admin_client: FlaskClient, data_dir: Path
) -> None:
    page = admin_client.get("/audit").get_data(as_text=True)
    head = audit_rows(data_dir)[-1]  # the page's own view_audit entry is checked too
    assert f"Audit chain intact: all {head['id']} entries check out; the newest is #{head['id']}" in page
    with raw(data_dir) as conn:
        conn.executescript(DROP_TRIGGERS)
        conn.execute("UPDATE audit_log SET actor = 'Ada Mensah' WHERE id = 2")
    page = admin_client.get("/audit").get_data(as_text=True)
    assert "The audit log was altered outside the kiosk: its chain breaks at entry #2." in page


def test_every_export_carries_the_chain_head(client: FlaskClient, data_dir: Path, small_xray: bytes) -> None:
    case_id = int(post_file(client, "/assess", small_xray).headers["Location"].rsplit("/", 1)[1])
    form = {"diagnosis": "NORMAL", "confirmed": "yes"}
    assert client.post(f"/cases/{case_id}/diagnosis", data=form).status_code == 303

    def current_head() -> str:
        return f"{audit_rows(data_dir)[-1]['id']}:{audit_rows(data_dir)[-1]['row_sha256']}"

    lines = list(csv.reader(io.StringIO(client.get("/history/export.csv").get_data(as_text=True))))
    assert lines[-1] == ["# audit_chain_head", current_head()]  # its own export_csv entry included

    body = json.loads(client.get("/history/export-fhir.json").data)
    assert body["meta"]["tag"] == [
        {"system": fhir.AUDIT_HEAD_SYSTEM, "code": current_head(), "display": fhir.AUDIT_HEAD}
    ]

    before = current_head()
    archive = zipfile.ZipFile(io.BytesIO(client.get("/history/confirmed-dataset.zip").data))
    assert json.loads(archive.read("export.json"))["audit_chain_head"] == before
    assert (
        audit_rows(data_dir)[-1]["action"] == "export_dataset" and audit_rows(data_dir)[-1]["actor"] == NURSE
    )


def test_a_database_file_elsewhere_is_checked_with_database(
    kiosk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A snapshot kept by a rollback (firmware_scripts/kiosk_db.py) is checked where it lies."""
    copy = tmp_path / "snapshots" / "from-2.0.0.sqlite3"
    copy.parent.mkdir()
    with raw(kiosk) as conn, contextlib.closing(sqlite3.connect(copy)) as target:
        conn.backup(target)
    status = main(["audit-verify", "--data-dir", str(tmp_path / "nowhere"), "--database", str(copy)])
    assert status == 0 and "audit log intact: 6 entries" in capsys.readouterr().out
    assert main(["audit-verify", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "no kiosk database at" in capsys.readouterr().err
