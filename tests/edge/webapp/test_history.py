"""History: search, confirmed diagnoses, CSV export, and the de-identified Kermany-layout dataset."""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import zipfile
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image

from edge import signing
from edge.kermany import scan_split
from edge.preprocess import load_xray
from edge.webapp.records import database
from edge.webapp.records.export import CSV_COLUMNS
from edge.webapp.views import history

from .bad_uploads import dicom
from .helpers import NURSE, audit_rows, post_file
from .test_pages import alert_text

XrayFactory = Callable[..., bytes]


def assess(client: FlaskClient, data: bytes, case_ref: str | None = None, filename: str = "xray.jpg") -> int:
    response = post_file(client, "/api/v1/predict", data, filename=filename, case_ref=case_ref)
    assert response.status_code == 201, response.get_json()
    return int(response.get_json()["id"])


def confirm(client: FlaskClient, case_id: int, diagnosis: str) -> None:
    """Both taps: the diagnosis, then 'Yes, record it' on the confirmation step."""
    first = client.post(f"/cases/{case_id}/diagnosis", data={"diagnosis": diagnosis})
    assert first.status_code == 200, first.data
    previous = re.search(r'name="previous" value="([^"]*)"', first.data.decode())
    assert previous is not None
    second = client.post(
        f"/cases/{case_id}/diagnosis",
        data={"diagnosis": diagnosis, "confirmed": "yes", "previous": previous.group(1)},
    )
    assert second.status_code == 303, second.data


def history_case_refs(client: FlaskClient, query: str) -> list[str]:
    page = client.get(f"/history?{query}").data.decode()
    return re.findall(r"<td class=\"case-ref\">(.*?)</td>", page)


def xray(factory: XrayFactory, seed: int) -> bytes:
    return factory(seed=seed, width=300, height=360)


def test_history_searches_case_reference_and_date_range(client: FlaskClient, xray_bytes: XrayFactory) -> None:
    for seed, ref in enumerate(["WARD1-001", "WARD1-002", "ER-7"]):
        assess(client, xray(xray_bytes, seed), ref)
    today = datetime.now(timezone.utc).date()
    assert history_case_refs(client, "") == ["ER-7", "WARD1-002", "WARD1-001"]
    assert history_case_refs(client, "case_ref=ward1") == ["WARD1-002", "WARD1-001"]
    assert history_case_refs(client, f"date_from={today}&date_to={today}") == [
        "ER-7",
        "WARD1-002",
        "WARD1-001",
    ]
    assert history_case_refs(client, f"date_to={today - timedelta(days=1)}") == []


def test_history_explains_a_bad_date(client: FlaskClient) -> None:
    response = client.get("/history?date_from=yesterday")
    assert response.status_code == 400
    assert (
        alert_text(response.data)
        == "Cannot search: date_from must be a date like 2026-01-31, got 'yesterday'."
    )


def test_confirmed_diagnosis_is_recorded_with_its_time_and_can_be_corrected(
    client: FlaskClient, data_dir: Path, small_xray: bytes
) -> None:
    case_id = assess(client, small_xray)
    confirm(client, case_id, "PNEUMONIA")
    confirm(client, case_id, "NORMAL")
    case = database.get_case(database.connect(database.db_path(data_dir)), case_id)
    assert case is not None and case.confirmed_label == "NORMAL"
    assert case.confirmed_utc is not None and case.confirmed_utc >= case.created_utc
    assert case.confirmed_by == NURSE
    assert f"NORMAL by {NURSE} (" in client.get(f"/cases/{case_id}").data.decode()


@pytest.mark.parametrize(
    ("case_id", "diagnosis", "status", "message"),
    [
        (1, "MAYBE", 400, "Choose the confirmed diagnosis: NORMAL or PNEUMONIA."),
        (1, "", 400, "Choose the confirmed diagnosis: NORMAL or PNEUMONIA."),
        (99, "NORMAL", 404, "There is no case #99."),
    ],
)
def test_bad_confirmation_is_refused(
    client: FlaskClient, small_xray: bytes, case_id: int, diagnosis: str, status: int, message: str
) -> None:
    assess(client, small_xray)
    response = client.post(f"/cases/{case_id}/diagnosis", data={"diagnosis": diagnosis})
    assert response.status_code == status
    assert alert_text(response.data) == message


def test_csv_export_lists_the_filtered_cases(client: FlaskClient, xray_bytes: XrayFactory) -> None:
    first = assess(client, xray(xray_bytes, 1), "CSV-1")
    assess(client, xray(xray_bytes, 2), "OTHER-2")
    confirm(client, first, "PNEUMONIA")
    response = client.get("/history/export.csv?case_ref=csv")
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    *rows, trailer = list(csv.DictReader(io.StringIO(response.data.decode())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert trailer["id"] == "# audit_chain_head"  # the audit log's head: test_audit_chain.py
    assert [(row["id"], row["case_ref"], row["confirmed_label"]) for row in rows] == [
        (str(first), "CSV-1", "PNEUMONIA")
    ]


def test_dataset_export_is_the_kermany_layout_of_confirmed_deidentified_images(
    client: FlaskClient, xray_bytes: XrayFactory, colour_photo: bytes, tmp_path: Path
) -> None:
    uploads = {seed: xray(xray_bytes, seed) for seed in range(4)}
    ids = {seed: assess(client, data) for seed, data in uploads.items()}
    confirm(client, ids[0], "NORMAL")
    confirm(client, ids[1], "PNEUMONIA")
    confirm(client, ids[2], "PNEUMONIA")  # the same image again, with another diagnosis: a conflict
    confirm(client, assess(client, uploads[2]), "NORMAL")
    refused = assess(client, colour_photo)  # refused by the gate: cannot be confirmed, not exported
    assert client.post(f"/cases/{refused}/diagnosis", data={"diagnosis": "NORMAL"}).status_code == 409
    # seed 3 is never confirmed: not exported

    response = client.get("/history/confirmed-dataset.zip")
    assert response.mimetype == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    archive.extractall(tmp_path / "export" / "train")
    samples = scan_split(tmp_path / "export", "train")
    assert sorted((s.label, s.path.parent.name) for s in samples) == [(0, "NORMAL"), (1, "PNEUMONIA")]
    for sample in samples:
        seed = 0 if sample.label == 0 else 1
        stored = np.asarray(Image.open(sample.path))
        np.testing.assert_array_equal(
            stored, load_xray(uploads[seed]).pixels
        )  # lossless copy of what was scored
    manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert sorted(row["status"] for row in manifest) == [
        "conflicting diagnoses: NORMAL / PNEUMONIA",
        "exported",
        "exported",
    ]


def test_without_openssl_the_dataset_export_says_why_and_is_not_audited(
    client: FlaskClient,
    data_dir: Path,
    xray_bytes: XrayFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    confirm(client, assess(client, xray(xray_bytes, 0)), "NORMAL")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # a kiosk image without the openssl command
    signing.check_openssl.cache_clear()
    response = client.get("/history/confirmed-dataset.zip")
    assert response.status_code == 503 and response.mimetype == "text/html"
    assert "Cannot export: the openssl command is not installed" in response.get_data(as_text=True)
    assert "export_dataset" not in [row["action"] for row in audit_rows(data_dir)]


def test_dicom_patient_fields_and_file_names_are_never_stored(
    client: FlaskClient, data_dir: Path, xray_bytes: XrayFactory, tmp_path: Path
) -> None:
    pixels = np.array(Image.open(io.BytesIO(xray(xray_bytes, 5))).convert("L"))
    pixels[0, :2] = (0, 255)  # full range: the DICOM's 16-bit stretch then keeps the image as it was
    upload = dicom(pixels, patient_name="Doe^Jane")
    case_id = assess(client, upload, filename="Doe_Jane_chest.dcm")
    assert client.get(f"/api/v1/results/{case_id}").get_json()["status"] == "ok"
    confirm(client, case_id, "NORMAL")
    export = client.get("/history/confirmed-dataset.zip").data
    (stored,) = (data_dir / "images").iterdir()
    image = Image.open(stored)
    assert image.format == "PNG" and image.mode == "L"
    assert not {key for key in image.info if key not in ("dpi", "gamma")}  # no text, EXIF or ICC chunks
    conn = sqlite3.connect(database.db_path(data_dir))
    dump = "\n".join(conn.iterdump()).encode()
    conn.close()
    files = [path.read_bytes() for path in data_dir.rglob("*") if path.is_file()]  # database, WAL, images
    for secret in (b"Doe", b"Jane", b"PID-123456", b"20200101"):
        for blob in (dump, export, *files):
            assert secret not in blob


def test_history_pages_newest_first(
    client: FlaskClient, xray_bytes: XrayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "PAGE_SIZE", 2)
    for seed in range(3):
        assess(client, xray(xray_bytes, seed), f"PAGE-{seed}")
    first = client.get("/history").data.decode()
    assert history_case_refs(client, "") == ["PAGE-2", "PAGE-1"]
    assert "page=2" in first and ">Older<" in first and ">Newer<" not in first
    assert history_case_refs(client, "page=2") == ["PAGE-0"]
    assert ">Newer<" in client.get("/history?page=2").data.decode()
    bad = client.get("/history?page=0")
    assert bad.status_code == 400
    assert alert_text(bad.data) == "Cannot search: page must be a whole number from 1 to 1000000, got '0'."
