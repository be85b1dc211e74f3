"""The language switch in a real browser: headless Chromium on the real kiosk, at 800 x 480.

Uses test_browser's kiosk and browser (the same server set-up and window); skipped with it when
Chromium is not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from . import test_browser
from .kiosk_server import KioskServer
from .test_browser import log_in, screenshot, wait_for

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
