"""The FHIR export: confirmed results as R4 DiagnosticReports, validated by a maintained library."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from edge.screener import INTENDED_USE
from edge.webapp.records import database, fhir

from .helpers import NURSE, audit_rows
from .test_history import assess, confirm

fhir_bundle = pytest.importorskip("fhir.resources.R4B.bundle", reason="pip install -r requirements-test.txt")


def export(client: FlaskClient, query: str = "") -> dict:
    response = client.get(f"/history/export-fhir.json{query}")
    assert response.status_code == 200
    assert response.mimetype == fhir.MEDIA_TYPE
    assert response.headers["Content-Disposition"].startswith('attachment; filename="pneumoedge-fhir-')
    return json.loads(response.data)


def test_confirmed_cases_export_as_valid_diagnostic_reports(
    client: FlaskClient, data_dir, colour_photo: bytes, xray_bytes: Callable[..., bytes]
) -> None:
    pneumonia = assess(client, xray_bytes(seed=31, width=300, height=360), case_ref="WARD3-0042")
    corrected = assess(client, xray_bytes(seed=32, width=300, height=360))
    assess(client, xray_bytes(seed=33, width=300, height=360), case_ref="UNCONFIRMED-1")
    assess(client, colour_photo, case_ref="REFUSED-1")
    confirm(client, pneumonia, "PNEUMONIA")
    confirm(client, corrected, "NORMAL")
    confirm(client, corrected, "PNEUMONIA")
    confirm(client, corrected, "NORMAL")

    body = export(client)
    fhir_bundle.Bundle.model_validate(body)  # raises on anything R4(B) does not allow
    reports = {entry["resource"]["conclusionCode"][0]["text"]: entry["resource"] for entry in body["entry"]}
    assert body["type"] == "collection" and len(body["entry"]) == 2
    first, second = reports["PNEUMONIA"], reports["NORMAL"]
    assert first["status"] == "final" and second["status"] == "amended"
    assert first["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "36554-4",
        "display": "XR Chest Single view",
    }
    assert first["conclusionCode"][0]["coding"][0]["code"] == "233604007"
    assert second["conclusionCode"][0]["coding"][0]["code"] == "168731009"
    assert first["performer"] == [{"display": NURSE}]
    assert first["identifier"] == [
        {"use": "usual", "type": {"text": "Clinic case reference"}, "value": "WARD3-0042"}
    ]
    assert "identifier" not in second  # no case reference typed: nothing else identifies anyone
    for report in reports.values():
        assert "subject" not in report
        assert report["effectiveDateTime"].endswith("Z") and report["issued"].endswith("Z")
        assert INTENDED_USE in report["text"]["div"]
        assert report["conclusion"].startswith(
            f"Clinician's diagnosis: {report['conclusionCode'][0]['text']}."
        )
    assert export(client)["entry"][0]["fullUrl"] == body["entry"][0]["fullUrl"]  # stable ids

    assert [entry["resource"]["status"] for entry in export(client, "?case_ref=WARD3")["entry"]] == ["final"]
    exports = [row for row in audit_rows(data_dir) if row["action"] == "export_fhir"]
    assert exports[-1]["actor"] == NURSE and exports[-1]["detail"] == "case_ref=WARD3"


def test_the_fhir_export_needs_a_login_and_a_good_filter(app: Flask, client: FlaskClient) -> None:
    anonymous = app.test_client().get("/history/export-fhir.json")
    assert anonymous.status_code in (302, 401) and b"DiagnosticReport" not in anonymous.data
    assert client.get("/history/export-fhir.json?date_from=yesterday").status_code == 400


def test_an_unconfirmed_case_cannot_be_made_into_a_report(
    client: FlaskClient, app: Flask, xray_bytes
) -> None:

    case_id = assess(client, xray_bytes(seed=34, width=300, height=360))
    with app.app_context():
        case = database.get_case(database.get_db(), case_id)
    with pytest.raises(ValueError, match="no confirmed diagnosis"):
        fhir.diagnostic_report(case, False, INTENDED_USE)
    assert fhir.bundle([case], set(), "2026-01-31T00:00:00.000Z", INTENDED_USE, None)["entry"] == []
