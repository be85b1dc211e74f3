"""The language switch in a real browser: headless Chromium on the real kiosk, at 800 x 480.

Uses test_browser's kiosk and browser (the same server set-up and window); skipped with it when
Chromium is not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.tiny_bundle import xray_bytes

from . import test_browser
from .kiosk_server import KioskServer
from .test_browser import LONG_REF, PAPERS, log_in, print_pages, screenshot, wait_for

# test_browser's fixtures, shared: the same kiosk set-up and the same 800 x 480 Chromium.
kiosk, browser, downloads = test_browser.kiosk, test_browser.browser, test_browser.downloads

pytestmark = pytest.mark.browser


def in_view(driver: WebDriver, element_id: str) -> bool:
    return bool(
        driver.execute_script(
            "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
            "return r.width > 0 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth"
            " && r.bottom <= innerHeight;",
            element_id,
        )
    )


def choose(driver: WebDriver, code: str) -> None:
    driver.find_element(By.CSS_SELECTOR, "#language summary").click()
    assert in_view(driver, f"lang-{code}")  # the open list fits on the 7-inch screen
    driver.find_element(By.ID, f"lang-{code}").click()
    wait_for(driver, f'html[lang="{code}"]')


def test_the_language_switch_turns_the_kiosk_french(
    kiosk: KioskServer, browser: WebDriver, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{kiosk.port}"
    browser.get(base + "/login")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").text == "Log in"

    choose(browser, "fr")
    assert browser.current_url == base + "/login"  # back on the page it was used on
    assert browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").text == "Se connecter"
    assert browser.find_element(By.ID, "review-note").text == "Traduction en attente de relecture clinique."
    assert "aide au dépistage" in browser.find_element(By.CSS_SELECTOR, ".intended-use").text

    log_in(browser)  # the choice outlives logging in
    screenshot(browser, tmp_path, "french")
    nav = browser.find_element(By.CSS_SELECTOR, ".bar nav").text
    assert "Nouvelle radio" in nav and "Historique" in nav and "Déconnexion" in nav
    for element_id in ("logout", "language"):
        assert in_view(browser, element_id)  # the French header still fits 800 px
    choose(browser, "pt")
    assert "Nova radiografia" in browser.find_element(By.CSS_SELECTOR, ".bar nav").text
    assert in_view(browser, "logout") and in_view(browser, "language")
    screenshot(browser, tmp_path, "portuguese")

    choose(browser, "en")
    assert "New X-ray" in browser.find_element(By.CSS_SELECTOR, ".bar nav").text
    assert not browser.find_elements(By.ID, "review-note")
    problems = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert problems == []


def test_a_french_case_from_upload_to_the_printed_report(
    kiosk: KioskServer, browser: WebDriver, tmp_path: Path
) -> None:
    """The two-tap confirmation and the one-page report (A4 and Letter) in French."""
    xray = tmp_path / "chest.jpeg"
    xray.write_bytes(xray_bytes(seed=24, width=1000, height=1200))
    browser.get(f"http://127.0.0.1:{kiosk.port}/login")
    choose(browser, "fr")
    log_in(browser)
    wait_for(browser, "#file").send_keys(str(xray))
    assert browser.find_element(By.ID, "dz-text").text == "Prêt: chest.jpeg"
    browser.find_element(By.ID, "case_ref").send_keys(LONG_REF)
    assert browser.find_element(By.ID, "assess").text == "Analyser la radio"
    browser.find_element(By.ID, "assess").click()
    assert wait_for(browser, "#label").text in ("NORMAL", "PNEUMONIE")
    assert "aide au dépistage" in browser.find_element(By.ID, "aid").text

    browser.find_element(By.ID, "confirm-pneumonia").click()
    assert (
        "Enregistrer PNEUMONIE comme diagnostic du clinicien" in wait_for(browser, "#confirm-question").text
    )
    browser.find_element(By.ID, "confirm-yes").click()
    WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: d.find_element(By.ID, "confirmed").text.startswith("PNEUMONIE par ")
    )
    browser.find_element(By.ID, "report").click()
    wait_for(browser, "#intended-use")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "fr"
    for paper in sorted(PAPERS):
        pages = print_pages(browser, paper)
        assert len(pages) == 1, f"the French report took {len(pages)} pages on {paper}"
        for expected in (
            "Identifiant du patient",
            "PNEUMONIE, enregistré par",
            "Relu par :",
            "chaque résultat doit être vérifié par un clinicien",
            "aide au dépistage",
            "Traduction en attente de relecture clinique.",
        ):
            assert expected in pages[0], f"{expected!r} is not on the one {paper} page: {pages[0]}"
    screenshot(browser, tmp_path, "report-fr")
