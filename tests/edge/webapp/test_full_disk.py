"""A data folder on a real, small file system filled to 100%: staff can still log in and read.

The kiosk runs as `python -m edge serve` with its data folder on an 8 MB tmpfs mounted for the test
(root only: skipped, saying why, elsewhere; the reserve's rules are also tested without root, on
free space the test sets). Another program fills the file system to the last
byte. Then logging in, the history, the result page and the API's reads must work; uploads are
refused with the plain storage-full words; /healthz is unhealthy; every acknowledged case is still
there. Once space is freed, uploads work again.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.bundle import Bundle
from edge.webapp.records import data_folder, database
from tests.tiny_bundle import xray_bytes

from .bad_uploads import MULTIPART, file_body
from .helpers import NURSE, NURSE_PIN, AppFactory, add_staff, login, post_file
from .kiosk_server import KioskServer
from .test_pages import alert_text

STAFF, PIN = "Ada Mensah", "482916"
SIZE = "8m"
FLOOR_MB = 2
MB = 1024 * 1024


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A fresh 8 MB tmpfs, unmounted afterwards."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the file system refuses one more byte."""
    filler = folder / "filler.bin"
    with filler.open("wb", buffering=0) as out:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):
            try:
                while True:
                    out.write(b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC
    return filler


def upload(kiosk: KioskServer, seed: int, case_ref: str) -> tuple[int, dict]:
    body = file_body(xray_bytes(seed=seed, width=300, height=360), case_ref=case_ref.encode())
    reply = kiosk.request("POST", "/api/v1/predict", body, MULTIPART)
    return reply.status, reply.json()


def test_a_full_data_folder_keeps_login_and_reading_working(tiny_bundle_int8: Bundle, small_fs: Path) -> None:
    data_dir = small_fs / "data"
    kiosk = KioskServer(
        tiny_bundle_int8.root, data_dir, admin=(STAFF, PIN), extra_args=("--min-free-mb", str(FLOOR_MB))
    )
    kiosk.log_path = small_fs.parent / "server.log"  # the log must not fill the small disk
    kiosk.start()
    try:
        acknowledged = {}
        for seed in range(3):
            status, case = upload(kiosk, seed, f"FULL-{seed}")
            assert status == 201
            acknowledged[case["id"]] = case["input_sha256"]
        assert (data_dir / data_folder.RESERVE_FILE).stat().st_size == FLOOR_MB * MB // 2

        filler = fill(small_fs)
        assert os.statvfs(small_fs).f_bavail == 0  # 100% full

        health = kiosk.request("GET", "/healthz")
        assert health.status == 503
        assert health.json()["storage"] == "low" and health.json()["status"] == "error"
        assert not (data_dir / data_folder.RESERVE_FILE).exists()  # released for the writes below

        cookie, csrf = kiosk.log_in(STAFF, PIN)  # a login writes a session and an audit entry
        session = {"Cookie": cookie, "Authorization": ""}
        history = kiosk.request("GET", "/history", headers=session)
        assert history.status == 200 and b"FULL-2" in history.body
        first = min(acknowledged)
        assert kiosk.request("GET", f"/cases/{first}", headers=session).status == 200
        listed = kiosk.request("GET", "/api/v1/results")
        assert listed.status == 200 and listed.json()["total"] == len(acknowledged)
        assert kiosk.request("GET", f"/api/v1/results/{first}").status == 200

        status, refused = upload(kiosk, 9, "FULL-9")
        assert status == 507 and refused["error"]["code"] == "storage_full"
        assert refused["error"]["message"] == str(data_folder.STORAGE_FULL_MESSAGE)
        page = kiosk.request(
            "POST",
            "/assess",
            file_body(xray_bytes(seed=9, width=300, height=360), case_ref=b"FULL-9"),
            MULTIPART,
            headers={**session, "X-CSRFToken": csrf},
        )
        assert page.status == 507, alert_text(page.body)
        assert alert_text(page.body) == data_folder.STORAGE_FULL_MESSAGE

        conn = sqlite3.connect(database.db_path(data_dir))
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            stored = dict(conn.execute("SELECT id, input_sha256 FROM cases").fetchall())
            actions = [row[0] for row in conn.execute("SELECT action FROM audit_log")]
        finally:
            conn.close()
        assert stored == acknowledged  # nothing acknowledged lost, nothing refused stored
        assert actions.count("login") == 1 and "view_result" in actions and "api_list_results" in actions

        filler.unlink()  # the technician frees space
        assert kiosk.request("GET", "/healthz").status == 200
        assert (data_dir / data_folder.RESERVE_FILE).exists()  # made again
        assert upload(kiosk, 9, "FULL-9")[0] == 201
    finally:
        kiosk.stop()


def test_the_reserve_is_released_below_the_floor_and_made_again(
    make_app: AppFactory, data_dir: Path, small_xray: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reserve's rules without root: free space as the file system reports it, moved by the test."""
    app = make_app(MIN_FREE_MB=FLOOR_MB)
    reserve = data_dir / data_folder.RESERVE_FILE
    assert reserve.stat().st_size == MB  # half the floor
    add_staff(app, NURSE, NURSE_PIN)
    client = app.test_client()
    assert login(client).status_code == 302
    free = [FLOOR_MB * MB - 1]  # just below the floor, the reserve still held
    monkeypatch.setattr(data_folder, "free_bytes", lambda _folder: free[0])

    assert client.get("/healthz").status_code == 503
    assert not reserve.exists()
    free[0] += MB  # the released reserve's space: counted as taken, so still "low"
    health = client.get("/healthz")
    assert health.status_code == 503 and health.get_json()["storage"] == "low"
    assert post_file(client, "/api/v1/predict", small_xray).status_code == 507
    assert client.get("/history").status_code == 200

    free[0] = FLOOR_MB * MB + MB  # room for the floor and the reserve again
    assert client.get("/healthz").status_code == 200
    assert reserve.stat().st_size == MB
    assert post_file(client, "/api/v1/predict", small_xray).status_code == 201
