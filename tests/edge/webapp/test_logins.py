"""Login names as people read them, PINs that are guessed first, and a name's back-off that never
keeps its owner out at the kiosk's own screen (issue 18, item 5)."""

from __future__ import annotations

import contextlib

import pytest
from flask import Flask
from flask.testing import FlaskClient

from edge.webapp.access import accounts
from edge.webapp.records import database

from .helpers import ADMIN, ADMIN_PIN, add_staff, login
from .test_pages import alert_text

CID, CID_PIN = "Cid Nurse", "582914"


def remote(app: Flask, address: str) -> FlaskClient:
    """A browser on another machine of the clinic network."""
    browser = app.test_client()
    browser.environ_base["REMOTE_ADDR"] = address
    return browser


@pytest.mark.parametrize(
    "typed",
    [
        "Cid Nurse",
        "Cid  Nurse",
        "Cid\tNurse",
        " cid nurse ",
        "CID NURSE",
        "Ｃｉｄ Ｎｕｒｓｅ",
        "Cid\u00a0Nurse",
    ],
)
def test_a_name_logs_in_however_its_spaces_case_and_width_are_typed(app: Flask, typed: str) -> None:
    add_staff(app, CID, CID_PIN)
    assert login(app.test_client(), typed, CID_PIN).status_code == 302


def test_every_spelling_of_a_name_counts_against_one_lockout(app: Flask) -> None:
    """Before: "Cid  Nurse" and "Cid\\tNurse" each had fresh counters. Each try from its own address."""
    add_staff(app, CID, CID_PIN)
    spellings = ["Cid Nurse", "Cid  Nurse", "Cid\tNurse", "cid nurse", "ＣＩＤ ＮＵＲＳＥ"]
    for k, typed in enumerate(spellings):
        assert login(remote(app, f"10.0.0.{k + 1}"), typed, "000001").status_code == 401
    held = login(remote(app, "10.0.0.99"), "CID\t\tnurse", CID_PIN)
    assert held.status_code == 429
    assert "Too many wrong PINs. Wait 2 seconds and try again." in alert_text(held.data)
    assert held.headers["Retry-After"] == "2"


@pytest.mark.parametrize("other", ["CID NURSE", "Cid  Nurse", "Ｃｉｄ Nurse", "cid nurse"])
def test_a_second_login_with_the_same_name_as_people_read_it_is_refused(app: Flask, other: str) -> None:
    add_staff(app, CID, CID_PIN)
    with pytest.raises(accounts.AccountError, match="There is already a login named Cid Nurse"):
        add_staff(app, other, "918273")


def test_names_are_stored_in_their_plain_form(app: Flask) -> None:
    assert add_staff(app, "Ｅｌｏｄｉｅ\t Ｍｂａ", "918273").name == "Elodie Mba"
    assert add_staff(app, "ÉLODIE MBA", "918274").name == "ÉLODIE MBA"  # not "Elodie Mba": É is not E
    with pytest.raises(accounts.AccountError, match="already a login named"):
        add_staff(app, "élodie mba", "918275")  # SQLite's NOCASE would have let this in (ASCII only)


@pytest.mark.parametrize(
    ("pin", "words"),
    [
        ("000000", "repeats the same digits"),
        ("111111", "repeats the same digits"),
        ("99999999", "repeats the same digits"),
        ("121212", "repeats the same digits"),
        ("123123", "repeats the same digits"),
        ("909090909", "repeats the same digits"),
        ("123456", "a run of digits up or down"),
        ("654321", "a run of digits up or down"),
        ("0123456789", "a run of digits up or down"),
        ("345678", "a run of digits up or down"),
        ("987654321", "a run of digits up or down"),
        ("112233", "one of the most common PINs"),
        ("159753", "one of the most common PINs"),
        ("147258", "one of the most common PINs"),
        ("789456", "one of the most common PINs"),
        ("123321", "one of the most common PINs"),
    ],
)
def test_pins_guessed_first_are_refused_in_plain_words(
    admin_client: FlaskClient, pin: str, words: str
) -> None:
    page = admin_client.post(
        "/staff", data={"name": "Dan Ray", "pin": pin, "pin_again": pin, "role": "staff"}
    )
    assert page.status_code == 400
    message = alert_text(page.data)
    assert words in message and "so it is guessed first" in message
    assert "Dan Ray" not in page.get_data(as_text=True).split('id="staff"')[-1]  # nothing was added


@pytest.mark.parametrize("pin", ["482916", "918273", "246810", "135790", "5820193746", "102938"])
def test_pins_with_no_such_pattern_are_accepted(pin: str) -> None:
    assert accounts.check_pin(pin) == pin


def test_a_new_pin_for_an_existing_login_follows_the_same_rules(app: Flask) -> None:
    staff = add_staff(app, CID, CID_PIN)
    with contextlib.closing(database.connect(database.db_path(app.config["DATA_DIR"]))) as conn:
        with pytest.raises(accounts.AccountError, match="run of digits"):
            accounts.set_pin(conn, staff.id, "234567", database.Actor(None, "test"))
        with pytest.raises(accounts.AccountError, match="repeats the same digits"):
            accounts.provision_admin(conn, "Ada Admin", "777777")


def test_a_name_backs_off_doubling_up_to_the_lockout(tmp_path) -> None:
    database.init_db(tmp_path)
    with contextlib.closing(database.connect(database.db_path(tmp_path))) as conn:
        name = ["name:cid nurse"]
        for _ in range(accounts.MAX_FAILURES):
            accounts.reserve_attempt(conn, [], now=1000.0, backoff_keys=name)
        now, waits = 1000.0, []
        for _ in range(7):
            with pytest.raises(accounts.LockedOutError) as held:
                accounts.reserve_attempt(conn, [], now=now + 0.5, backoff_keys=name)
            waits.append(round(held.value.retry_after_s + 0.5, 3))
            now += waits[-1]
            accounts.reserve_attempt(conn, [], now=now, backoff_keys=name)  # allowed once waited
        assert waits == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
        later = now + accounts.NAME_FORGET_S
        accounts.reserve_attempt(conn, [], now=later, backoff_keys=name)  # forgotten after an hour


def test_wrong_pins_from_elsewhere_never_keep_the_owner_out_at_the_kiosk_screen(
    app: Flask, client: FlaskClient
) -> None:
    """Before: five wrong PINs for a named administrator from anywhere locked it out for 60 s."""
    add_staff(app, ADMIN, ADMIN_PIN, "admin")
    for k in range(accounts.MAX_FAILURES * 2):
        login(remote(app, f"10.0.1.{k + 1}"), ADMIN, "000001")
    assert login(remote(app, "10.0.1.200"), ADMIN, ADMIN_PIN).status_code == 429  # elsewhere: wait
    kiosk_screen = app.test_client()  # 127.0.0.1
    assert login(kiosk_screen, ADMIN, ADMIN_PIN).status_code == 302
    assert login(remote(app, "10.0.1.201"), ADMIN, ADMIN_PIN).status_code == 302  # cleared by the success


def test_the_kiosk_screens_own_address_still_locks_out(app: Flask) -> None:
    add_staff(app, ADMIN, ADMIN_PIN, "admin")
    kiosk_screen = app.test_client()
    for _ in range(accounts.MAX_FAILURES):
        assert login(kiosk_screen, ADMIN, "000001").status_code == 401
    held = login(kiosk_screen, ADMIN, ADMIN_PIN)
    assert held.status_code == 429 and held.headers["Retry-After"] == "60"
