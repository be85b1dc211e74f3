"""Accountability and sessions: personal logins, roles, the audit log, two-tap confirmation, logout,
idle timeout, the race-free lockout, and record numbers beyond SQLite's range."""

from __future__ import annotations

import http.client
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from edge.bundle import Bundle
from edge.webapp.access import accounts
from edge.webapp.records import database

from .helpers import (
    ADMIN,
    NURSE,
    NURSE_PIN,
    AppFactory,
    add_staff,
    audit_rows,
    login,
    post_file,
)
from .kiosk_server import KioskServer
from .test_pages import alert_text


def assess(client: FlaskClient, data: bytes) -> int:
    response = post_file(client, "/api/v1/predict", data)
    assert response.status_code == 201
    return int(response.get_json()["id"])


def stored_case(data_dir: Path, case_id: int) -> database.Case:
    conn = database.connect(database.db_path(data_dir))
    try:
        case = database.get_case(conn, case_id)
    finally:
        conn.close()
    assert case is not None
    return case


def test_confirmation_takes_a_second_tap_and_is_attributed_with_its_history(
    client: FlaskClient, data_dir: Path, small_xray: bytes
) -> None:
    case_id = assess(client, small_xray)
    first = client.post(f"/cases/{case_id}/diagnosis", data={"diagnosis": "PNEUMONIA"})
    assert first.status_code == 200
    page = first.data.decode()
    assert "Record <strong>PNEUMONIA</strong> as the clinician's diagnosis" in page
    assert f"under your name, {NURSE}" in page
    assert stored_case(data_dir, case_id).confirmed_label is None  # the first tap writes nothing

    def second(diagnosis: str, previous: str) -> int:
        form = {"diagnosis": diagnosis, "confirmed": "yes", "previous": previous}
        return client.post(f"/cases/{case_id}/diagnosis", data=form).status_code

    assert second("PNEUMONIA", "") == 303
    assert second("NORMAL", "PNEUMONIA") == 303  # a correction
    case = stored_case(data_dir, case_id)
    assert (case.confirmed_label, case.confirmed_by) == ("NORMAL", NURSE)
    changes = [
        (row["actor"], row["action"], row["old_value"], row["new_value"])
        for row in audit_rows(data_dir)
        if row["case_id"] == case_id and row["action"] in ("confirm", "correct")
    ]
    assert changes == [(NURSE, "confirm", None, "PNEUMONIA"), (NURSE, "correct", "PNEUMONIA", "NORMAL")]


def test_a_correction_based_on_a_stale_page_is_refused(
    client: FlaskClient, data_dir: Path, small_xray: bytes
) -> None:
    case_id = assess(client, small_xray)
    form = {"diagnosis": "PNEUMONIA", "confirmed": "yes", "previous": ""}
    assert client.post(f"/cases/{case_id}/diagnosis", data=form).status_code == 303
    stale = client.post(f"/cases/{case_id}/diagnosis", data={**form, "diagnosis": "NORMAL"})
    assert stale.status_code == 409
    assert alert_text(stale.data).startswith("Someone recorded PNEUMONIA for this case meanwhile.")
    assert stored_case(data_dir, case_id).confirmed_label == "PNEUMONIA"


def test_a_case_that_could_not_be_assessed_cannot_be_confirmed(
    client: FlaskClient, data_dir: Path, colour_photo: bytes
) -> None:
    case_id = assess(client, colour_photo)
    assert 'id="confirm-normal"' not in client.get(f"/cases/{case_id}").data.decode()
    for form in ({"diagnosis": "PNEUMONIA"}, {"diagnosis": "PNEUMONIA", "confirmed": "yes"}):
        refused = client.post(f"/cases/{case_id}/diagnosis", data=form)
        assert refused.status_code == 409
        assert alert_text(refused.data).startswith("This image could not be assessed")
    assert stored_case(data_dir, case_id).confirmed_label is None
    conn = sqlite3.connect(database.db_path(data_dir))  # and the database itself refuses it
    with pytest.raises(sqlite3.IntegrityError, match="cannot be confirmed"):
        conn.execute("UPDATE cases SET confirmed_label = 'NORMAL' WHERE id = ?", (case_id,))
    conn.close()


def test_the_audit_log_is_append_only(client: FlaskClient, data_dir: Path, small_xray: bytes) -> None:
    assess(client, small_xray)
    conn = sqlite3.connect(database.db_path(data_dir))
    try:
        for sql in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(sql)
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] > 0
    finally:
        conn.close()


def test_every_view_export_and_screening_is_attributed(
    client: FlaskClient, data_dir: Path, small_xray: bytes
) -> None:
    case_id = int(post_file(client, "/assess", small_xray).headers["Location"].rsplit("/", 1)[1])
    client.get(f"/cases/{case_id}")
    client.get(f"/cases/{case_id}/report")
    client.get("/history/export.csv?date_from=2026-01-01")
    client.get("/history/confirmed-dataset.zip")
    client.get(f"/api/v1/results/{case_id}")
    rows = [(r["actor"], r["action"], r["case_id"]) for r in audit_rows(data_dir)]
    assert (NURSE, "login", None) in rows
    for action in ("screen", "view_result", "view_report"):
        assert (NURSE, action, case_id) in rows
    assert (NURSE, "export_csv", None) in rows and (NURSE, "export_dataset", None) in rows
    assert (NURSE, "api_view_result", case_id) in rows  # the pages' session, by name
    export = next(r for r in audit_rows(data_dir) if r["action"] == "export_csv")
    assert export["detail"] == "date_from=2026-01-01"


def test_logout_ends_the_session_on_the_server(app: Flask, client: FlaskClient) -> None:
    with client.session_transaction() as session:
        copied = dict(session)  # an attacker's copy of the cookie
    token = client.get("/").data.decode()
    assert client.post("/logout").status_code == 302
    assert client.get("/").status_code == 302
    replay = app.test_client()
    with replay.session_transaction() as session:
        session.update(copied)
    assert replay.get("/").status_code == 302  # the copied cookie no longer works
    assert "csrf_token" in token


def test_an_idle_session_is_logged_out(make_app: AppFactory) -> None:
    app = make_app(IDLE_LOGOUT_S=1)
    add_staff(app, NURSE, NURSE_PIN)
    client = app.test_client()
    login(client)
    assert client.get("/").status_code == 200
    time.sleep(1.3)
    response = client.get("/history")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_only_an_administrator_manages_staff_and_a_disabled_login_ends(
    app: Flask, client: FlaskClient, admin_client: FlaskClient, data_dir: Path
) -> None:
    assert client.get("/staff").status_code == 403
    assert 'id="add-staff"' in admin_client.get("/staff").data.decode()
    added = admin_client.post(
        "/staff", data={"name": "Ruth Clinician", "pin": "918273", "pin_again": "918273", "role": "staff"}
    )
    assert added.status_code == 303
    weak = admin_client.post("/staff", data={"name": "Ann B", "pin": "1234", "pin_again": "1234"})
    assert weak.status_code == 400 and alert_text(weak.data) == "A PIN has 6 to 12 digits."
    conn = database.connect(database.db_path(data_dir))
    nurse = next(s for s in accounts.list_staff(conn) if s.name == NURSE)
    dump = "\n".join(conn.iterdump())
    conn.close()
    assert "918273" not in dump and NURSE_PIN not in dump  # PINs only as scrypt hashes
    assert "scrypt:" in dump
    assert admin_client.post(f"/staff/{nurse.id}", data={"action": "disable"}).status_code == 303
    assert client.get("/").status_code == 302  # the nurse's open session ended
    assert login(client).status_code == 401
    actions = [(r["actor"], r["action"]) for r in audit_rows(data_dir)]
    assert (ADMIN, "staff_add") in actions and (ADMIN, "staff_disable") in actions


def test_the_first_administrator_is_created_on_the_kiosk_itself(app: Flask) -> None:
    remote = app.test_client()
    remote.environ_base["REMOTE_ADDR"] = "10.0.0.9"
    assert remote.get("/login").status_code == 403
    assert (
        remote.post("/login", data={"name": "Eve", "pin": "111111", "pin_again": "111111"}).status_code == 403
    )
    local = app.test_client()
    assert local.get("/").status_code == 302
    assert "Create administrator" in local.get("/login").data.decode()
    created = local.post("/login", data={"name": "Ada Admin", "pin": "591736", "pin_again": "591736"})
    assert created.status_code == 302
    assert local.get("/staff").status_code == 200
    again = app.test_client().post("/login", data={"name": "Bob", "pin": "683915", "pin_again": "683915"})
    assert again.status_code == 401  # logins exist now: this is an ordinary (wrong) login


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/cases/99999999999999999999"),
        ("GET", "/cases/9223372036854775808/report"),
        ("GET", "/cases/9223372036854775808/heatmap.png"),
        ("POST", "/cases/99999999999999999999/diagnosis"),
        ("GET", "/api/v1/results/99999999999999999999"),
        ("GET", "/api/v1/results/18446744073709551616/heatmap.png"),
    ],
)
def test_record_numbers_beyond_sqlite_range_are_404(client: FlaskClient, method: str, path: str) -> None:
    assert client.open(path, method=method, data={"diagnosis": "NORMAL"}).status_code == 404


def test_the_largest_record_number_is_an_ordinary_404(client: FlaskClient) -> None:
    assert client.get(f"/cases/{database.MAX_ROWID}").status_code == 404


def _parallel(count: int, attempt: Callable[[int], Callable[[], int]]) -> Counter[int]:
    """Prepare `count` attempts, then send them all at once (a barrier); count the statuses."""
    barrier = threading.Barrier(count)
    statuses: list[int] = []
    lock = threading.Lock()

    def run(k: int) -> None:
        prepared = attempt(k)
        barrier.wait()
        status = prepared()
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return Counter(statuses)


def test_parallel_wrong_pins_and_codes_get_exactly_the_allowed_tries(
    tiny_bundle_int8: Bundle, tmp_path: Path
) -> None:
    """40 wrong PINs (and 40 wrong API codes) at once on the real server: 5 are checked, the rest 429."""
    kiosk = KioskServer(
        tiny_bundle_int8.root,
        tmp_path / "data",
        access_code="clinic-code-2026",
        threads=8,
        admin=("Ada", "582914"),
    ).start()
    try:

        def wrong_pin(_k: int) -> Callable[[], int]:
            conn = http.client.HTTPConnection("127.0.0.1", kiosk.port, timeout=120)
            conn.request("GET", "/login")
            page = conn.getresponse()
            cookie = page.getheader("Set-Cookie", "").split(";")[0]
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.read().decode())
            assert token is not None
            body = f"name=Ada&pin=000000&csrf_token={token.group(1)}".encode()
            headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}

            def send() -> int:
                conn.request("POST", "/login", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                conn.close()
                return response.status

            return send

        assert _parallel(40, wrong_pin) == Counter(
            {401: accounts.MAX_FAILURES, 429: 40 - accounts.MAX_FAILURES}
        )

        def wrong_code(_k: int) -> Callable[[], int]:
            return lambda: (
                kiosk.request(
                    "GET", "/api/v1/results", headers={"Authorization": "Bearer wrong-code-123"}
                ).status
            )

        assert _parallel(40, wrong_code) == Counter(
            {401: accounts.MAX_FAILURES, 429: 40 - accounts.MAX_FAILURES}
        )
    finally:
        kiosk.stop()
