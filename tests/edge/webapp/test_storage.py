"""Storage: a full disk is refused plainly, /healthz tells the truth, retention, crash leftovers."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from edge.webapp.intake import scoring
from edge.webapp.records import data_folder, database, xray_copies

from .helpers import NURSE, NURSE_PIN, AppFactory, add_staff, login, post_file, stored_state
from .test_pages import alert_text


def logged_in(app: Flask) -> FlaskClient:
    add_staff(app, NURSE, NURSE_PIN)
    client = app.test_client()
    assert login(client).status_code == 302
    return client


def test_below_the_free_space_floor_uploads_get_a_plain_storage_full_answer(
    make_app: AppFactory, data_dir: Path, small_xray: bytes
) -> None:
    app = make_app(MIN_FREE_MB=10**12)  # more than any disk: "below the floor"
    client = logged_in(app)
    page = post_file(client, "/assess", small_xray, case_ref="WARD2-17")
    assert page.status_code == 507
    assert alert_text(page.data) == data_folder.STORAGE_FULL_MESSAGE
    assert 'value="WARD2-17"' in page.data.decode()  # the typed case reference is kept
    api = post_file(client, "/api/v1/predict", small_xray)
    assert api.status_code == 507 and api.get_json()["error"]["code"] == "storage_full"
    assert stored_state(data_dir) == (0, [])
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["storage"] == "low" and health.get_json()["status"] == "error"


def test_a_disk_that_fills_during_the_write_is_storage_full_not_a_500(
    client: FlaskClient, data_dir: Path, small_xray: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(xray_copies, "atomic_write_bytes", no_space)
    response = post_file(client, "/assess", small_xray, case_ref="WARD2-18")
    assert response.status_code == 507
    assert alert_text(response.data) == data_folder.STORAGE_FULL_MESSAGE
    assert stored_state(data_dir) == (0, [])


def test_a_database_that_fills_is_storage_full_and_leaves_no_image(
    client: FlaskClient, data_dir: Path, small_xray: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*_args: object, **_kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(scoring.database, "insert_case", full)
    response = post_file(client, "/api/v1/predict", small_xray)
    assert response.status_code == 507
    assert stored_state(data_dir) == (0, [])  # the image written before the failed commit is gone


def test_healthz_is_unhealthy_when_the_image_folder_cannot_be_written(
    client: FlaskClient, data_dir: Path
) -> None:
    assert client.get("/healthz").get_json()["images"] == "ok"
    folder = xray_copies.images_dir(data_dir)
    folder.rename(data_dir / "images-moved")
    folder.write_bytes(b"")  # a file where the folder should be: nothing can be written in it
    body = client.get("/healthz")
    assert body.status_code == 503 and body.get_json()["images"] == "error"


def test_healthz_is_unhealthy_when_the_database_cannot_be_written(
    client: FlaskClient, data_dir: Path
) -> None:
    path = database.db_path(data_dir)
    path.rename(data_dir / "moved.sqlite3")
    path.mkdir()  # the database file is gone and cannot be created
    body = client.get("/healthz")
    assert body.status_code == 503 and body.get_json()["database"] == "error"


def _backdate(data_dir: Path, case_id: int, stamp: str) -> None:
    conn = sqlite3.connect(database.db_path(data_dir))
    with conn:
        conn.execute("UPDATE cases SET created_utc = ? WHERE id = ?", (stamp, case_id))
    conn.close()


def test_retention_deletes_old_images_and_heatmaps_but_keeps_results(
    make_app: AppFactory, data_dir: Path, xray_bytes: Callable[..., bytes], small_xray: bytes
) -> None:
    client = logged_in(make_app())
    old = post_file(client, "/api/v1/predict", small_xray).get_json()["id"]
    new = post_file(client, "/api/v1/predict", xray_bytes(seed=9, width=300, height=360)).get_json()["id"]
    _backdate(data_dir, old, "2020-01-01T00:00:00.000Z")
    assert len(stored_state(data_dir)[1]) == 2

    restarted = make_app(RETENTION_DAYS=30)  # retention runs at every start (and hourly)
    client = restarted.test_client()
    login(client)
    rows, files = stored_state(data_dir)
    assert rows == 2 and len(files) == 1
    conn = database.connect(database.db_path(data_dir))
    kept_old, kept_new = database.get_case(conn, old), database.get_case(conn, new)
    assert kept_old is not None and kept_new is not None
    assert kept_old.label is not None and kept_old.image_file is None  # the result stays
    assert not database.has_heatmap(conn, old) and database.has_heatmap(conn, new)
    assert files == [kept_new.image_file]
    conn.close()
    assert "deleted after the kiosk's retention period" in client.get(f"/cases/{old}").data.decode()


def test_images_without_a_case_are_removed_at_start(
    make_app: AppFactory, data_dir: Path, small_xray: bytes
) -> None:
    client = logged_in(make_app())
    post_file(client, "/api/v1/predict", small_xray)
    _, kept = stored_state(data_dir)
    orphan = xray_copies.images_dir(data_dir) / f"{'ab' * 32}.png"  # written, then the process was killed
    orphan.write_bytes(xray_copies.deidentified_png(np.zeros((4, 4), dtype=np.uint8)))
    make_app()
    assert stored_state(data_dir)[1] == kept
