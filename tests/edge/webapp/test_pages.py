"""The touchscreen pages through the Flask test client: upload, result, report, and every refusal."""

from __future__ import annotations

import html
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from edge.screener import INTENDED_USE
from edge.webapp.records import database

from .bad_uploads import CATALOGUE, BadUpload
from .helpers import post_file, stored_state

STATIC = Path(__file__).resolve().parents[3] / "edge" / "webapp" / "static"


def alert_text(page: bytes) -> str:
    match = re.search(r'role="alert"[^>]*>(.*?)</p>', page.decode(), re.DOTALL)
    assert match, "the page shows no error message"
    return html.unescape(match.group(1)).strip()


def element_text(page: bytes, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page.decode(), re.DOTALL)
    assert match, f"no element #{element_id}"
    return html.unescape(match.group(1)).strip()


def test_upload_page_offers_file_camera_and_drop_with_intended_use(client: FlaskClient, app: Flask) -> None:
    page = client.get("/")
    text = page.data.decode()
    assert page.status_code == 200
    assert 'accept="image/*,.dcm' in text
    assert 'capture="environment"' in text
    assert 'id="dropzone"' in text
    assert INTENDED_USE in text
    info = app.extensions["pneumoedge.kiosk"]
    assert f"Model {info.model_name} · sha256 {info.model_sha256[:12]} · {info.runtime}" in text


def test_pages_and_assets_load_nothing_from_outside_the_kiosk(client: FlaskClient) -> None:
    """Fully offline: no CDN, no web fonts, no external scripts, in pages or static files."""
    sources = [client.get("/").data.decode(), client.get("/history").data.decode()]
    sources += [path.read_text(encoding="utf-8") for path in STATIC.iterdir()]
    for source in sources:
        source = source.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a namespace name, never fetched
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", source, re.IGNORECASE)
        assert "@import" not in source and "@font-face" not in source


def test_assess_commits_then_shows_label_probability_threshold_and_heatmap(
    client: FlaskClient, data_dir: Path, small_xray: bytes
) -> None:
    response = post_file(client, "/assess", small_xray, case_ref="WARD3-0042")
    assert response.status_code == 303
    case_id = int(response.headers["Location"].rsplit("/", 1)[1])
    case = database.get_case(database.connect(database.db_path(data_dir)), case_id)
    assert case is not None and case.status == "ok" and case.case_ref == "WARD3-0042"

    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    assert element_text(page.data, "label") == case.label
    assert element_text(page.data, "probability") == f"{case.probability * 100:.1f}%"
    text = page.data.decode()
    assert element_text(page.data, "threshold") == "Operating threshold 50.0%: PNEUMONIA at or above it."
    assert f'<p class="aid" id="aid">{INTENDED_USE}</p>' in text
    assert f"/cases/{case_id}/heatmap-layer.png" in text and f"/cases/{case_id}/xray.jpg" in text
    assert case.model_sha256[:12] in text and "UTC" in text
    # which calibration set the threshold is part of every shown result
    assert element_text(page.data, "reading") == case.detail
    assert "(uncalibrated: the model's own sigmoid)" in case.detail
    heatmap = client.get(f"/cases/{case_id}/heatmap.png")
    assert heatmap.mimetype == "image/png" and heatmap.data.startswith(b"\x89PNG")


def test_a_full_resolution_upload_of_megabytes_is_accepted(
    client: FlaskClient, xray_bytes: Callable[..., bytes]
) -> None:
    data = xray_bytes(seed=9, width=2000, height=1700)
    assert len(data) > 300_000  # several times the multipart parser's 64 kB read buffer
    assert post_file(client, "/assess", data).status_code == 303


def test_gate_refusal_is_recorded_and_shown_as_cannot_assess(
    client: FlaskClient, data_dir: Path, colour_photo: bytes
) -> None:
    response = post_file(client, "/assess", colour_photo, filename="photo.jpg")
    assert response.status_code == 303
    page = client.get(response.headers["Location"])
    assert element_text(page.data, "label") == "CANNOT ASSESS"
    assert element_text(page.data, "reason").startswith("This is a colour picture, not an X-ray image.")
    assert element_text(page.data, "technical").startswith(
        "Details for the technician: this looks like a colour photograph, not a chest X-ray (colourfulness"
    )
    assert b"heatmap" not in page.data
    rows, files = stored_state(data_dir)
    assert rows == 1 and files == []  # refused images are not kept for retraining


@pytest.mark.parametrize("bad", CATALOGUE, ids=lambda bad: bad.id)
def test_bad_upload_gets_its_status_and_message_and_changes_nothing(
    client: FlaskClient, data_dir: Path, bad: BadUpload
) -> None:
    before = stored_state(data_dir)
    response = client.post("/assess", data=bad.body, content_type=bad.content_type)
    assert response.status_code == bad.status
    assert bad.message in alert_text(response.data)
    if bad.detail is not None:
        assert bad.detail in element_text(response.data, "technical")
    else:
        assert b'id="technical"' not in response.data
    assert stored_state(data_dir) == before == (0, [])
    assert client.get("/").status_code == 200


@pytest.mark.parametrize(
    "filename", ["../../../../tmp/evil.jpg", "C:\\Users\\Smith_John\\chest.jpg", "/etc/passwd.jpg"]
)
def test_uploaded_file_name_is_never_used_or_stored(
    client: FlaskClient, data_dir: Path, tmp_path: Path, small_xray: bytes, filename: str
) -> None:
    response = post_file(client, "/assess", small_xray, filename=filename)
    assert response.status_code == 303
    _, files = stored_state(data_dir)
    assert len(files) == 1 and re.fullmatch(r"[0-9a-f]{64}\.png", files[0])
    everything = [p.name for p in tmp_path.rglob("*")]
    assert not any(name in everything for name in ("evil.jpg", "chest.jpg", "passwd.jpg"))
    conn = sqlite3.connect(database.db_path(data_dir))
    dump = "\n".join(conn.iterdump())
    conn.close()
    assert "Smith" not in dump and "evil" not in dump and "passwd" not in dump


def test_report_is_a_printable_page_with_the_case_and_intended_use(
    client: FlaskClient, small_xray: bytes
) -> None:
    location = post_file(client, "/assess", small_xray, case_ref="R-7").headers["Location"]
    report = client.get(f"{location}/report")
    text = report.data.decode()
    assert report.status_code == 200
    assert "report.css" in text and "data-print" in text
    assert "R-7" in text and f'<p class="aid" id="aid">{INTENDED_USE}</p>' in text
    assert "@media print" in client.get("/static/report.css").data.decode()


def test_unknown_case_gets_a_404_page(client: FlaskClient) -> None:
    response = client.get("/cases/999")
    assert response.status_code == 404
    assert alert_text(response.data) == "There is no case #999."
    assert client.get("/cases/999/heatmap.png").status_code == 404
