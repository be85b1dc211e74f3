"""The records database around an update: snapshot before the switch, restored on a rollback after
a schema change, so the release rolled back to can read its database (issue 10, item 9).

Real SQLite databases made with the kiosk's own schema (edge.webapp.records.database) in --root trees.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge.webapp.records import database
from tests.firmware.conftest import FIRMWARE, provision_rooted, run_script

NEWER = database.SCHEMA_VERSION + 1  # what a later release's migration would make


def _count(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT count(*) FROM cases").fetchone()[0]


def _add_case(path: Path, ref: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "INSERT INTO cases (case_ref, created_utc, status, threshold, detail, quality_flags, model_name,"
            " model_sha256, runtime, input_sha256, elapsed_ms) VALUES (?, '2026-11-30T10:00:00Z', 'ok', 0.5,"
            " '', '', 'm', 'x', 'r', 'y', 1.0)",
            (ref,),
        )


def _migrate_like_a_newer_release(path: Path) -> None:
    """What a release with a newer schema does when it starts, then it records a case."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(f"BEGIN; CREATE TABLE newer_feature (x); PRAGMA user_version={NEWER}; COMMIT;")
    _add_case(path, "made-by-2.0.0")


@pytest.fixture
def rooted(tmp_path: Path, tiny_dep_bundles: dict[str, Path]) -> tuple[Path, dict[str, str], Path]:
    """A --root device on 1.0.0 with a kiosk database (this schema, one case); returns root, env, db."""
    root, env = provision_rooted(tmp_path, tiny_dep_bundles["1.0.0"])
    data = root / "var/lib/pneumoedge"
    database.init_db(data)
    _add_case(data / database.DB_FILE, "made-by-1.0.0")
    return root, env, data / database.DB_FILE


def test_the_database_is_snapshotted_before_the_switch(
    rooted: tuple[Path, dict[str, str], Path], tiny_dep_bundles: dict[str, Path]
) -> None:
    root, env, db = rooted
    result = run_script("update.sh", "--root", root, tiny_dep_bundles["2.0.0"], env=env)
    assert result.returncode == 0, result.stderr
    snapshot = db.parent / "snapshots/1.0.0.sqlite3"
    assert _count(snapshot) == 1
    assert snapshot.stat().st_mode & 0o077 == 0  # patient records: root only


def test_a_rollback_after_a_schema_change_restores_a_database_the_old_release_reads(
    rooted: tuple[Path, dict[str, str], Path], tiny_dep_bundles: dict[str, Path]
) -> None:
    root, env, db = rooted
    prefix = root / "opt/pneumoedge"
    assert run_script("update.sh", "--root", root, tiny_dep_bundles["2.0.0"], env=env).returncode == 0
    _migrate_like_a_newer_release(db)
    with pytest.raises(RuntimeError, match=f"schema version {NEWER}"):
        database.init_db(db.parent)  # what release 1.0.0 would do with the migrated database
    (prefix / "releases/1.0.0/.healthy").write_text("passed\n")  # as on a device

    back = run_script("update.sh", "--root", root, "--rollback", env=env)
    assert back.returncode == 0, back.stderr
    assert (prefix / "current").readlink() == Path("releases/1.0.0")
    database.init_db(db.parent)  # 1.0.0 starts: no RuntimeError
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == database.SCHEMA_VERSION
        assert [r[0] for r in conn.execute("SELECT case_ref FROM cases")] == ["made-by-1.0.0"]
    (kept,) = (db.parent / "snapshots").glob("from-2.0.0-*.sqlite3")
    assert _count(kept) == 2  # the newer release's record is kept, not thrown away
    assert f"changed the database schema ({database.SCHEMA_VERSION} -> {NEWER})" in back.stderr


def test_a_rollback_without_a_schema_change_keeps_the_live_database(
    rooted: tuple[Path, dict[str, str], Path], tiny_dep_bundles: dict[str, Path]
) -> None:
    root, env, db = rooted
    assert run_script("update.sh", "--root", root, tiny_dep_bundles["2.0.0"], env=env).returncode == 0
    _add_case(db, "made-by-2.0.0")
    (root / "opt/pneumoedge/releases/1.0.0/.healthy").write_text("passed\n")
    back = run_script("update.sh", "--root", root, "--rollback", env=env)
    assert back.returncode == 0, back.stderr
    assert _count(db) == 2
    assert not list((db.parent / "snapshots").glob("from-*"))


def test_a_failed_rollback_gives_the_release_left_its_database_back(tmp_path: Path) -> None:
    """A rollback restored the target's older snapshot, then the target failed: going back to the
    release left must restore that release's snapshot, or its confirmed cases vanish from screen."""
    data = tmp_path / "records"
    data.mkdir()
    database.init_db(data)
    live = data / database.DB_FILE
    _add_case(live, "confirmed-under-3.0.0")
    kiosk_db = [sys.executable, str(FIRMWARE / "kiosk_db.py")]
    taken = subprocess.run([*kiosk_db, "snapshot", "--data-dir", data, "--release", "3.0.0"], check=False)
    assert taken.returncode == 0
    with contextlib.closing(sqlite3.connect(live)) as conn, conn:  # the target's older snapshot
        conn.execute("DELETE FROM cases")
        conn.execute(f"PRAGMA user_version={database.SCHEMA_VERSION - 1}")
    back = subprocess.run(
        [*kiosk_db, "restore", "--data-dir", data, "--release", "3.0.0", "--leaving", "2.0.0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert back.returncode == 0, back.stderr
    assert _count(live) == 1
    assert len(list((data / "snapshots").glob("from-2.0.0-*.sqlite3"))) == 1
