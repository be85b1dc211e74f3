"""Case references: register numbers yes; names, dates and anything off the clinic's pattern no."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from edge.kiosk_settings import DEFAULTS
from edge.webapp.intake.case_refs import CaseRefError, CaseRefRules

from .helpers import NURSE, NURSE_PIN, AppFactory, add_staff, login, post_file, stored_state
from .test_pages import alert_text

DEFAULT = CaseRefRules(None, DEFAULTS["CASE_REF_EXAMPLE"])
CORPUS_FILE = Path(__file__).resolve().parents[2] / "fixtures" / "case_refs.tsv"
EXAMPLE = "like OPD-2026-00123"
#: The plain words of each refusal (English; test_i18n checks every catalog translates them).
REFUSALS = {
    "date": (
        f"The case reference looks like a date of birth. Type only the clinic's register number, {EXAMPLE}."
    ),
    "phone": (
        "The case reference looks like a phone number. Type only the clinic's register number, "
        f"{EXAMPLE}; never a patient's phone number."
    ),
    "id": (
        "The case reference looks like an ID or phone number. Type only the clinic's register number, "
        f"{EXAMPLE}; never a patient's ID, passport or phone number."
    ),
    "name": (
        f"The case reference looks like a person's name. Type only the clinic's register number, {EXAMPLE}."
    ),
    "chars": (
        "The case reference has characters that are not allowed; use letters A-Z, digits, space and "
        f". _ - / (at most 64 characters), {EXAMPLE}. Never enter a patient's name."
    ),
    "register": f"The case reference is not one of this clinic's register numbers; type it {EXAMPLE}.",
}


def corpus() -> list[tuple[str, str, str]]:
    """(verdict, reference, why) for every line of tests/fixtures/case_refs.tsv."""
    lines = CORPUS_FILE.read_text(encoding="utf-8").splitlines()
    rows = [tuple(line.split("\t")) for line in lines if line and not line.startswith("#")]
    assert all(len(row) == 3 for row in rows), [row for row in rows if len(row) != 3]
    return rows  # type: ignore[return-value]


def test_the_corpus_has_at_least_fifty_of_each_and_no_duplicates() -> None:
    verdicts = [verdict for verdict, _, _ in corpus()]
    assert verdicts.count("accept") >= 50 and len(verdicts) - verdicts.count("accept") >= 50
    assert set(verdicts) <= {"accept", *REFUSALS}
    references = [reference for _, reference, _ in corpus()]
    assert len(references) == len(set(references))


@pytest.mark.parametrize(("verdict", "reference", "why"), corpus(), ids=[row[1] for row in corpus()])
def test_the_corpus(verdict: str, reference: str, why: str) -> None:
    if verdict == "accept":
        assert DEFAULT.check(f"  {reference} ") == reference, why
    else:
        with pytest.raises(CaseRefError) as refused:
            DEFAULT.check(reference)
        assert str(refused.value) == REFUSALS[verdict], why


def test_a_reference_over_64_characters_is_refused_with_the_rule() -> None:
    with pytest.raises(CaseRefError, match="The case reference is 65 characters long; use letters A-Z"):
        DEFAULT.check("OPD-" + "1" * 61)


@pytest.mark.parametrize(
    ("pattern", "reference"),
    [
        (r"[0-9]{8}", "12345678"),  # a clinic whose register numbers are 8 digits
        (r"OPD-[0-9]{4}-[0-9]{2}-[0-9]{2}", "OPD-2026-04-12"),  # year, ward, bed: shaped like a date
        (r"[A-Z]{2}[0-9]{7}", "AK0123456"),  # shaped like a passport
    ],
)
def test_the_clinics_pattern_is_the_first_rule(pattern: str, reference: str) -> None:
    with pytest.raises(CaseRefError):
        DEFAULT.check(reference)
    assert CaseRefRules(re.compile(pattern), reference).check(reference) == reference


def test_what_the_clinics_pattern_does_not_match_still_meets_every_rule() -> None:
    rules = CaseRefRules(re.compile(r"[0-9]{8}"), "12345678")
    with pytest.raises(CaseRefError) as refused:
        rules.check("0712 345 678")
    assert str(refused.value).startswith("The case reference looks like a phone number.")
    with pytest.raises(
        CaseRefError, match="not one of this clinic's register numbers; type it like 12345678"
    ):
        rules.check("OPD-2026-00123")


def test_a_clinic_pattern_wide_enough_for_identifiers_is_warned_about_at_start(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    make_app(CASE_REF_PATTERN=r"[A-Z0-9 -]+", CASE_REF_EXAMPLE="OPD-2026-00123")
    assert "accepts what looks like patient identifiers (0712 345 678, 0712345678, 12345678" in caplog.text
    caplog.clear()
    make_app(CASE_REF_PATTERN=r"OPD-[0-9]{4}-[0-9]{5}", CASE_REF_EXAMPLE="OPD-2026-00123")
    assert "patient identifiers" not in caplog.text


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


def test_a_phone_number_is_refused_on_the_api_too_and_nothing_is_stored(
    client: FlaskClient, data_dir: Path, small_xray: bytes
) -> None:
    response = post_file(client, "/api/v1/predict", small_xray, case_ref="+254 712 345 678")
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_case_ref"
    assert response.json["error"]["message"] == REFUSALS["phone"]
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
