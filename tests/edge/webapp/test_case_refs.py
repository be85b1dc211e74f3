"""Case references: register numbers yes; names, dates and anything off the clinic's pattern no."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from edge.kiosk_settings import DEFAULTS
from edge.webapp.case_refs import CaseRefError, CaseRefRules

from .helpers import NURSE, NURSE_PIN, AppFactory, add_staff, login, post_file, stored_state
from .test_pages import alert_text

DEFAULT = CaseRefRules(re.compile(DEFAULTS["CASE_REF_PATTERN"]), DEFAULTS["CASE_REF_EXAMPLE"])
GOOD = ["OPD-2026-00123", "WARD3-0042", "R-7", "A/12/345", "2026.00123", "IPD 4471", "opd-2026-1"]
NAMES = ["JANE DOE", "Jane Doe 17", "OPD-1 JOHN SMITH", "mary  ann"]
DATES = [
    "JANE DOE DOB 2019-05-04",
    "OPD-2019-05-04",
    "04/05/2019",
    "4.5.19",
    "12 MAY 2019",
    "May 4, 2019",
    "DOB 1234",
    "A1 born 2020",
]


@pytest.mark.parametrize("ref", GOOD)
def test_register_numbers_are_accepted(ref: str) -> None:
    assert DEFAULT.check(f"  {ref} ") == ref


@pytest.mark.parametrize("ref", NAMES)
def test_names_are_refused_saying_what_to_type(ref: str) -> None:
    with pytest.raises(
        CaseRefError, match=r"looks like a person's name\. Type only the clinic's register number"
    ):
        DEFAULT.check(ref)


@pytest.mark.parametrize("ref", DATES)
def test_dates_are_refused_saying_what_to_type(ref: str) -> None:
    with pytest.raises(CaseRefError, match="looks like a date of birth"):
        DEFAULT.check(ref)


def test_a_reference_without_a_digit_is_not_a_register_number() -> None:
    with pytest.raises(
        CaseRefError, match="not one of this clinic's register numbers; type it like OPD-2026-00123"
    ):
        DEFAULT.check("WARD")


def form_value(page: bytes, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*value="([^"]*)"', page.decode())
    assert match, f"no #{element_id} with a value"
    return html.unescape(match.group(1))


def test_a_refused_name_keeps_the_typed_reference_and_stores_nothing(
    client: FlaskClient, data_dir: Path, small_xray: bytes
) -> None:
    response = post_file(client, "/assess", small_xray, case_ref="JANE DOE DOB 2019-05-04")
    assert response.status_code == 400
    assert "Type only the clinic's register number, like OPD-2026-00123" in alert_text(response.data)
    assert form_value(response.data, "case_ref") == "JANE DOE DOB 2019-05-04"  # to correct, not retype
    assert stored_state(data_dir) == (0, [])


def test_the_clinics_pattern_is_enforced(make_app: AppFactory, data_dir: Path, small_xray: bytes) -> None:
    app = make_app(CASE_REF_PATTERN=r"OPD-[0-9]{4}-[0-9]{5}", CASE_REF_EXAMPLE="OPD-2026-00123")
    add_staff(app, NURSE, NURSE_PIN)
    browser = app.test_client()
    login(browser)
    assert "like OPD-2026-00123" in browser.get("/").data.decode()
    refused = post_file(browser, "/assess", small_xray, case_ref="WARD3-0042")
    assert refused.status_code == 400
    assert alert_text(refused.data) == (
        "The case reference is not one of this clinic's register numbers; type it like OPD-2026-00123."
    )
    api = post_file(browser, "/api/v1/predict", small_xray, case_ref="OPD-26-1")
    assert api.status_code == 400 and api.json["error"]["code"] == "bad_case_ref"
    assert stored_state(data_dir)[0] == 0
    accepted = post_file(browser, "/api/v1/predict", small_xray, case_ref="OPD-2026-00123")
    assert accepted.status_code == 201 and accepted.json["case_ref"] == "OPD-2026-00123"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"CASE_REF_PATTERN": "OPD-[0-9"}, "is not a valid regular expression"),
        ({"CASE_REF_PATTERN": r"OPD-[0-9]{4}"}, "CASE_REF_EXAMPLE 'OPD-2026-00123' is refused"),
    ],
)
def test_a_broken_setting_stops_the_start(make_app: AppFactory, setting: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_app(**setting)
