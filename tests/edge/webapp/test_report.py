"""The printable report names the facility, leaves a line for the patient's identifier, and says
who confirmed the result; the browser test prints it (one page on A4 and on Letter)."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from edge.screener import INTENDED_USE

from .helpers import NURSE, NURSE_PIN, AppFactory, add_staff, login, post_file
from .test_pages import element_text


def confirm(client: FlaskClient, location: str, diagnosis: str) -> None:
    case_id = int(location.rsplit("/", 1)[1])
    form = {"diagnosis": diagnosis, "previous": "", "confirmed": "yes"}
    assert client.post(f"/cases/{case_id}/diagnosis", data=form).status_code == 303


def test_the_report_names_the_configured_facility_and_the_confirmer(
    make_app: AppFactory, small_xray: bytes
) -> None:
    app = make_app(FACILITY_NAME="Centro de Saúde da Maxaquene")
    add_staff(app, NURSE, NURSE_PIN)
    client = app.test_client()
    login(client)
    location = post_file(client, "/assess", small_xray, case_ref="OPD-2026-00123").headers["Location"]
    confirm(client, location, "PNEUMONIA")
    page = client.get(f"{location}/report").data
    assert element_text(page, "facility") == "Centro de Saúde da Maxaquene"
    assert element_text(page, "confirmer").startswith(f"PNEUMONIA, recorded by {NURSE}")
    assert re.search(
        r'id="patient-line"><span class="write-in[^"]*"></span><br><small>Write it in', page.decode()
    )
    assert element_text(page, "intended-use") == INTENDED_USE


def test_without_a_facility_name_the_report_has_a_line_to_write_it_in(
    client: FlaskClient, small_xray: bytes
) -> None:
    location = post_file(client, "/assess", small_xray).headers["Location"]
    page = client.get(f"{location}/report").data.decode()
    assert re.search(r'id="facility">Facility: <span class="write-in', page)
    assert "not recorded" in page  # no confirmation yet
