"""An implausible clock (before the release's build time) is shown on every page and on /healthz."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from flask.testing import FlaskClient

from edge.webapp.records.clock import check_clock
from tests.edge.webapp.helpers import NURSE, NURSE_PIN, AppFactory, add_staff, login

FUTURE = "2099-01-01T00:00:00Z"


def _client(make_app: AppFactory, not_before: str | None) -> FlaskClient:
    app = make_app(CLOCK_NOT_BEFORE=not_before)
    add_staff(app, NURSE, NURSE_PIN, "staff")
    browser = app.test_client()
    assert login(browser).status_code == 302
    return browser


def test_a_clock_before_the_build_time_is_reported_but_the_kiosk_stays_healthy(make_app: AppFactory) -> None:
    client = _client(make_app, FUTURE)
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json()["status"] == "ok"
    clock = response.get_json()["clock"]
    assert clock["ok"] is False and clock["not_before_utc"] == FUTURE
    page = client.get("/").get_data(as_text=True)
    assert 'id="clock-warning"' in page and "before this software was built (2099-01-01T00:00:00Z)" in page


@pytest.mark.parametrize("not_before", [None, "2020-01-01T00:00:00Z"])
def test_a_plausible_clock_shows_no_warning(make_app: AppFactory, not_before: str | None) -> None:
    client = _client(make_app, not_before)
    assert client.get("/healthz").get_json()["clock"]["ok"] is True
    assert "clock-warning" not in client.get("/").get_data(as_text=True)


def test_a_malformed_build_time_stops_start_up(make_app: AppFactory) -> None:
    with pytest.raises(ValueError, match="CLOCK_NOT_BEFORE='yesterday' is not a time"):
        make_app(CLOCK_NOT_BEFORE="yesterday")


def test_check_clock_compares_in_utc() -> None:
    before = datetime(2026, 11, 30, 9, 59, tzinfo=timezone.utc)
    assert not check_clock("2026-11-30T10:00:00Z", before).ok
    assert check_clock("2026-11-30T10:00:00+00:00", before.replace(hour=10)).ok
