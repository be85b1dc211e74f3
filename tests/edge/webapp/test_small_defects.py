"""Smaller defects from the re-test: idle-logout timing, private files, ASCII case numbers, and a
probability that never reads as certainty."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask import Flask
from flask.testing import FlaskClient

from edge.webapp.access import accounts
from edge.webapp.display.percent import percent
from edge.webapp.records import database, xray_copies

from .helpers import NURSE, NURSE_PIN, AppFactory, add_staff, login, post_file


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The accounts module's clock, moved by the test (nothing sleeps)."""
    now = [1_800_000_000.0]
    monkeypatch.setattr(accounts, "time", SimpleNamespace(time=lambda: now[0]))
    return now


def test_idle_logout_counts_from_the_latest_request_exactly(make_app: AppFactory, clock: list[float]) -> None:
    app = make_app(IDLE_LOGOUT_S=30)
    add_staff(app, NURSE, NURSE_PIN)
    client = app.test_client()
    login(client)
    start = clock[0]
    for offset in (7, 14, 31, 50, 75):  # never 30 s without a request: an active user stays
        clock[0] = start + offset
        assert client.get("/").status_code == 200, offset
    clock[0] = start + 75 + 29.9
    assert client.get("/").status_code == 200  # 29.9 s idle: not yet
    clock[0] += 30.1
    response = client.get("/")  # 30.1 s idle: logged out, not a moment early
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_the_data_folder_and_database_are_the_kiosk_users_alone(
    client: FlaskClient, data_dir: Path, small_xray: bytes
) -> None:
    assert post_file(client, "/assess", small_xray).status_code == 303
    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert xray_copies.images_dir(data_dir).stat().st_mode & 0o777 == 0o700
    for path in data_dir.glob(f"{database.DB_FILE}*"):
        assert path.stat().st_mode & 0o777 == 0o600, path.name
    for path in xray_copies.images_dir(data_dir).iterdir():
        assert path.stat().st_mode & 0o777 == 0o600


def test_an_older_kiosks_readable_files_are_made_private(make_app: AppFactory, data_dir: Path) -> None:
    make_app()
    data_dir.chmod(0o755)
    database.db_path(data_dir).chmod(0o644)
    make_app()
    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert database.db_path(data_dir).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("number", ["１", "٣", "１２", "1１"])
def test_case_numbers_are_ascii_digits_only(client: FlaskClient, small_xray: bytes, number: str) -> None:
    post_file(client, "/api/v1/predict", small_xray)
    for url in (f"/cases/{number}", f"/cases/{number}/report", f"/api/v1/results/{number}"):
        assert client.get(url).status_code == 404, url
    assert client.get("/cases/1").status_code == 200


@pytest.mark.parametrize(
    ("probability", "shown"),
    [
        (0.8713, "87.1"),
        (0.9994, "99.9"),
        (0.9995, "> 99.9"),
        (1.0, "> 99.9"),
        (0.0004, "< 0.1"),
        (0.0, "< 0.1"),
    ],
)
def test_a_probability_never_reads_as_certainty(probability: float, shown: str) -> None:
    assert percent(probability) == shown


def test_a_near_certain_result_shows_more_than_99_9(
    app: Flask, client: FlaskClient, data_dir: Path, small_xray: bytes
) -> None:
    case_id = post_file(client, "/api/v1/predict", small_xray).get_json()["id"]
    conn = sqlite3.connect(database.db_path(data_dir))
    with conn:
        conn.execute("UPDATE cases SET probability = 0.99996, label = 'PNEUMONIA' WHERE id = ?", (case_id,))
    conn.close()
    for url in (f"/cases/{case_id}", f"/cases/{case_id}/report", "/history"):
        page = client.get(url).data.decode()
        assert "&gt; 99.9%" in page and "100.0%" not in page, url
