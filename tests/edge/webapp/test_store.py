"""The SQLite store and the de-identified image folder."""

from __future__ import annotations

import io
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.webapp.records import database, xray_copies
from tests.kiosk_exports import scored_upload


def new_case(n: int) -> database.NewCase:
    return scored_upload(
        f"{n:064x}", case_ref=f"T-{n}", probability=0.1, detail="NORMAL", model_name="m", runtime="r"
    )


def test_connections_use_wal_and_full_sync(tmp_path: Path) -> None:
    database.init_db(tmp_path)
    conn = database.connect(database.db_path(tmp_path))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    database.init_db(tmp_path)
    with sqlite3.connect(database.db_path(tmp_path)) as conn:
        conn.execute(f"PRAGMA user_version={database.SCHEMA_VERSION + 1}")
    with pytest.raises(
        RuntimeError,
        match=f"schema version {database.SCHEMA_VERSION + 1}; "
        f"this kiosk knows version {database.SCHEMA_VERSION}",
    ):
        database.init_db(tmp_path)


def test_concurrent_writers_queue_and_every_write_lands(tmp_path: Path) -> None:
    database.init_db(tmp_path)
    committed: list[int] = []
    lock = threading.Lock()

    def writer(offset: int) -> None:
        conn = database.connect(database.db_path(tmp_path))
        for n in range(offset, offset + 25):
            case = database.insert_case(conn, new_case(n), heatmap_png=b"png")
            with lock:
                committed.append(case.id)
        conn.close()

    threads = [threading.Thread(target=writer, args=(k * 100,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    conn = database.connect(database.db_path(tmp_path))
    ids = sorted(row[0] for row in conn.execute("SELECT id FROM cases"))
    assert ids == sorted(committed) and len(ids) == 100
    assert conn.execute("SELECT count(*) FROM heatmaps").fetchone()[0] == 100


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    database.init_db(tmp_path)
    conn = database.connect(database.db_path(tmp_path))
    broken = database.NewCase(**{**new_case(1).__dict__, "status": "maybe"})  # violates the CHECK
    with pytest.raises(sqlite3.IntegrityError):
        database.insert_case(conn, broken, heatmap_png=None)
    assert conn.execute("SELECT count(*) FROM cases").fetchone()[0] == 0
    assert database.insert_case(conn, new_case(2), heatmap_png=None).id >= 1  # and the connection still works


def test_images_are_named_by_hash_and_stray_temporary_files_are_swept(tmp_path: Path) -> None:
    xray_copies.init_dir(tmp_path)
    leftover = xray_copies.images_dir(tmp_path) / ".abc.png.x1y2"
    leftover.write_bytes(b"half")
    xray_copies.init_dir(tmp_path)
    assert not leftover.exists()
    name = xray_copies.save(
        tmp_path, "a" * 64, xray_copies.deidentified_png(np.zeros((4, 5), dtype=np.uint8))
    )
    assert name == "a" * 64 + ".png" and xray_copies.path_of(tmp_path, name).is_file()
    for bad in ("../secret.png", "x.png", "a" * 64 + ".png/../../etc"):
        with pytest.raises(ValueError, match="not a stored image name"):
            xray_copies.path_of(tmp_path, bad)
    with pytest.raises(ValueError, match="64 lowercase hex digits"):
        xray_copies.save(tmp_path, "../../evil", b"png")


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (300, 257)])
def test_deidentified_png_is_a_lossless_bare_grayscale_png(shape: tuple[int, int]) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    data = xray_copies.deidentified_png(pixels)
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.format == "PNG" and image.mode == "L" and image.info == {}
        np.testing.assert_array_equal(np.asarray(image), pixels)
    assert data.count(b"IDAT") == 1 and b"tEXt" not in data and b"eXIf" not in data and b"iTXt" not in data


def test_a_version_3_database_gains_the_refer_band_and_keeps_its_cases(tmp_path: Path) -> None:
    database.init_db(tmp_path)
    with sqlite3.connect(database.db_path(tmp_path)) as conn:  # undo v4: the previous release's schema
        conn.execute("ALTER TABLE cases DROP COLUMN refer_band_upper")
        conn.execute("PRAGMA user_version=3")
        conn.execute(
            "INSERT INTO cases (case_ref, created_utc, status, label, probability, threshold, detail, "
            "quality_flags, model_name, model_sha256, runtime, input_sha256, elapsed_ms) VALUES "
            "('OLD-1', '2026-01-01T00:00:00.000Z', 'ok', 'PNEUMONIA', 0.3, 0.2, 'd', '[]', 'm', 'x', 'r', "
            "'y', 1)"
        )
    database.init_db(tmp_path)
    database.init_db(tmp_path)  # a second start changes nothing
    conn = database.connect(database.db_path(tmp_path))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == database.SCHEMA_VERSION == 4
    old = database.get_case(conn, 1)
    assert old.case_ref == "OLD-1" and old.refer_band_upper is None and not old.uncertain
    banded = database.insert_case(
        conn,
        scored_upload("b" * 64, label="PNEUMONIA", probability=0.3, threshold=0.2, refer_band_upper=0.8),
        None,
    )
    assert banded.refer_band_upper == 0.8 and banded.uncertain and banded.to_dict()["uncertain"] is True
