"""The audit log page: administrators read who did what; nobody else; reading it is audited."""

from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient

from .helpers import ADMIN, NURSE, audit_rows, post_file


def test_an_administrator_reads_a_cases_entries_and_the_reading_is_audited(
    client: FlaskClient, admin_client: FlaskClient, data_dir: Path, small_xray: bytes
) -> None:
    case_id = int(
        post_file(client, "/assess", small_xray, case_ref="OPD-2026-00123")
        .headers["Location"]
        .rsplit("/", 1)[1]
    )
    page = admin_client.get(f"/audit?case={case_id}")
    assert page.status_code == 200
    text = page.data.decode()
    assert f"<td>{NURSE}</td><td>screen" in text and f"for case #{case_id}" in text
    assert "OPD-2026-00123" not in text  # cases by number only
    assert audit_rows(data_dir)[-1]["actor"] == ADMIN and audit_rows(data_dir)[-1]["action"] == "view_audit"


def test_staff_cannot_read_the_audit_log(client: FlaskClient) -> None:
    assert client.get("/audit").status_code == 403


def test_a_case_number_that_is_not_one_is_a_400(admin_client: FlaskClient) -> None:
    for bad in ("abc", "-1", str(2**63)):
        assert admin_client.get(f"/audit?case={bad}").status_code == 400
