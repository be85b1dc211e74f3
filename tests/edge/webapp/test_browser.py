"""A real browser on the real kiosk: log in, upload, result, confirm, history, exports, report.

Headless Chromium through selenium, in an 800 x 480 window (the 7-inch touchscreen). Set
PNEUMOEDGE_SCREENSHOTS=DIR to keep the screenshots and the printed reports for a look.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import re
import shutil
import sqlite3
import time
import unicodedata
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pypdf import PdfReader

from edge.bundle import Bundle
from tests.tiny_bundle import xray_bytes

from .kiosk_server import KioskServer

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(
        "headless Chromium is not installed: apt-get install chromium chromium-driver",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402  (only once we know a browser exists)
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ACCESS_CODE = "browser-test-code"
STAFF_NAME = "Grace Nurse"
STAFF_PIN = "482916"
WIDTH, HEIGHT = 800, 480


@pytest.fixture(scope="module")
def kiosk(tiny_bundle_int8: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KioskServer]:
    server = KioskServer(
        tiny_bundle_int8.root,
        tmp_path_factory.mktemp("browser") / "data",
        ACCESS_CODE,
        admin=(STAFF_NAME, STAFF_PIN),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def browser(tmp_path: Path, downloads: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        f"--window-size={WIDTH},{HEIGHT}",
    ):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    # The viewport itself is the touchscreen's 800 x 480, whatever the window decorations take.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, css: str, timeout: float = 30.0):
    present = expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    return wait_until(driver, present, timeout)


def wait_until(driver: WebDriver, condition, timeout: float = 30.0):
    """Wait for a condition, retrying while a page navigation replaces the elements it reads."""
    ignored = (StaleElementReferenceException,)
    return WebDriverWait(driver, timeout, ignored_exceptions=ignored).until(condition)


def wait_for_download(folder: Path, suffix: str, timeout: float = 30.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in folder.iterdir() if p.name.endswith(suffix)]
        if done:
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no {suffix} download appeared in {timeout:.0f} s: {sorted(folder.iterdir())}")


def fully_visible(driver: WebDriver, element_id: str) -> bool:
    """On screen without scrolling: inside the page's scrolling main area, inside the 800 x 480 viewport."""
    return bool(
        driver.execute_script(
            "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
            "const m = document.querySelector('main').getBoundingClientRect();"
            "return r.top >= Math.max(m.top, 0) && r.left >= 0 && r.right <= innerWidth"
            " && r.bottom <= Math.min(m.bottom, innerHeight);",
            element_id,
        )
    )


def screenshot(driver: WebDriver, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / f"{name}.png"))
    keep = os.environ.get("PNEUMOEDGE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / f"{name}.png", Path(keep) / f"{name}.png")


def test_upload_result_confirm_history_and_exports(
    kiosk: KioskServer, browser: WebDriver, tmp_path: Path, downloads: Path
) -> None:
    xray = tmp_path / "chest.jpeg"
    xray.write_bytes(xray_bytes(seed=21, width=1000, height=1200))
    base = f"http://127.0.0.1:{kiosk.port}"

    browser.get(base + "/")
    log_in(browser)
    assert browser.find_element(By.ID, "who").text == STAFF_NAME  # who is logged in is on every page
    wait_for(browser, "#file").send_keys(str(xray))
    browser.find_element(By.ID, "case_ref").send_keys("BROWSER-1")
    assert fully_visible(browser, "assess") and fully_visible(browser, "dropzone")
    assert "Ready: chest.jpeg" in browser.find_element(By.ID, "dz-text").text  # the script saw the file
    screenshot(browser, tmp_path, "upload")
    browser.find_element(By.ID, "assess").click()

    label = wait_for(browser, "#label").text
    assert label in ("NORMAL", "PNEUMONIA")
    case_id = int(browser.current_url.rsplit("/", 1)[1])
    case = kiosk.request("GET", f"/api/v1/results/{case_id}").json()
    assert case["label"] == label and case["case_ref"] == "BROWSER-1"
    assert browser.find_element(By.ID, "probability").text == f"{case['probability'] * 100:.1f}%"
    heatmap = browser.find_element(By.CSS_SELECTOR, ".xray img")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", heatmap) > 0
    for element_id in ("label", "probability"):
        assert fully_visible(browser, element_id)
    assert "must be reviewed by a clinician" in browser.find_element(By.CSS_SELECTOR, ".aid").text
    screenshot(browser, tmp_path, "result")

    browser.find_element(By.ID, "confirm-pneumonia").click()
    question = wait_for(browser, "#confirm-question").text  # the second tap: nothing recorded yet
    assert "Record PNEUMONIA" in question
    assert kiosk.request("GET", f"/api/v1/results/{case_id}").json()["confirmed_label"] is None
    screenshot(browser, tmp_path, "confirm-step")
    browser.find_element(By.ID, "confirm-yes").click()
    wait_until(
        browser, lambda d: d.find_element(By.ID, "confirmed").text.startswith(f"PNEUMONIA by {STAFF_NAME}")
    )
    conn = sqlite3.connect(kiosk.data_dir / "pneumoedge.sqlite3")
    entry = conn.execute(
        "SELECT actor, action, old_value, new_value FROM audit_log WHERE case_id = ? AND action = 'confirm'",
        (case_id,),
    ).fetchall()
    conn.close()
    assert entry == [(STAFF_NAME, "confirm", None, "PNEUMONIA")]
    # An administrator sees the same entry in the kiosk: Staff, then Audit log, then this case.
    browser.find_element(By.LINK_TEXT, "Staff").click()
    wait_for(browser, "#audit-link").click()
    wait_for(browser, "#case").send_keys(str(case_id), Keys.ENTER)
    wait_until(browser, lambda d: f"for case #{case_id}" in d.find_element(By.CSS_SELECTOR, ".hint").text)
    rows = [" ".join(row.text.split()) for row in browser.find_elements(By.CSS_SELECTOR, "#audit tbody tr")]
    assert any(f"{STAFF_NAME} confirm #{case_id} PNEUMONIA" in row for row in rows), rows
    screenshot(browser, tmp_path, "audit")

    browser.find_element(By.LINK_TEXT, "History").click()
    row = wait_for(browser, "table.cases tbody tr")
    assert "BROWSER-1" in row.text and "PNEUMONIA" in row.text
    screenshot(browser, tmp_path, "history")

    browser.find_element(By.ID, "export-csv").click()
    *rows, trailer = csv.DictReader(io.StringIO(wait_for_download(downloads, ".csv").read_text()))
    assert [(r["case_ref"], r["confirmed_label"]) for r in rows] == [("BROWSER-1", "PNEUMONIA")]
    assert trailer["id"] == "# audit_chain_head"
    browser.find_element(By.ID, "export-dataset").click()
    names = zipfile.ZipFile(wait_for_download(downloads, ".zip")).namelist()
    assert names == [
        f"PNEUMONIA/{case['input_sha256']}.png",
        "manifest.csv",
        "export.json",
        "export.sig",
        "kiosk.pub",
    ]

    browser.get(f"{base}/cases/{case_id}/report")
    assert "screening report" in wait_for(browser, "h1").text
    assert browser.find_element(By.CSS_SELECTOR, "[data-print]").is_displayed()
    screenshot(browser, tmp_path, "report")
    pdf = base64.b64decode(
        browser.execute_cdp_cmd("Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69})["data"]
    )
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1  # the report prints on one A4 page

    problems = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert problems == []  # no CSP violations, no missing assets, no script errors


def log_in(browser: WebDriver) -> None:
    """Log in as the named staff member, unless this browser session already is."""
    if browser.find_elements(By.ID, "who"):
        return
    wait_for(browser, "#name").send_keys(STAFF_NAME)
    browser.find_element(By.ID, "pin").send_keys(STAFF_PIN)
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    wait_for(browser, "#who")


#: The longest case reference the kiosk takes (64 characters), with no space to break it at.
LONG_REF = "OPD-2026-00123-WARD7-BED12-FOLLOWUP3-RADIOLOGY-REVIEW-A0001-B001"  # 64, passes the guard
PAPERS = {"A4": (8.27, 11.69), "Letter": (8.5, 11.0)}  # inches


def print_pages(browser: WebDriver, paper: str) -> list[str]:
    """Print the open page to PDF as Chromium's print dialog would, on `paper`; each page's text."""
    width, height = PAPERS[paper]
    pdf = base64.b64decode(
        browser.execute_cdp_cmd(
            "Page.printToPDF", {"paperWidth": width, "paperHeight": height, "printBackground": False}
        )["data"]
    )
    keep = os.environ.get("PNEUMOEDGE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / f"report-{paper}.pdf").write_bytes(pdf)
    texts = [
        unicodedata.normalize("NFKC", page.extract_text() or "") for page in PdfReader(io.BytesIO(pdf)).pages
    ]
    return [" ".join(text.split()) for text in texts]  # NFKC: the PDF's "ﬁ" ligature is "fi"


@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_the_report_prints_on_one_page_with_everything_a_clinic_needs(
    kiosk: KioskServer, browser: WebDriver, tmp_path: Path, paper: str
) -> None:
    """Signature, confirmer, patient write-in line and intended use on page 1, whatever the paper."""
    xray = tmp_path / "chest.jpeg"
    xray.write_bytes(xray_bytes(seed=23, width=1000, height=1200))
    browser.get(f"http://127.0.0.1:{kiosk.port}/")
    log_in(browser)
    wait_for(browser, "#file").send_keys(str(xray))
    browser.find_element(By.ID, "case_ref").send_keys(LONG_REF)
    browser.find_element(By.ID, "assess").click()
    wait_for(browser, "#label")
    browser.find_element(By.ID, "confirm-normal").click()
    wait_for(browser, "#confirm-yes").click()
    wait_until(
        browser, lambda d: d.find_element(By.ID, "confirmed").text.startswith(f"NORMAL by {STAFF_NAME}")
    )
    browser.find_element(By.ID, "report").click()
    wait_for(browser, "#intended-use")
    assert browser.find_element(By.ID, "case-ref").text.startswith(LONG_REF)

    pages = print_pages(browser, paper)
    screenshot(browser, tmp_path, f"report-{paper}")
    assert len(pages) == 1, f"the report took {len(pages)} pages on {paper}"
    (text,) = pages
    for expected in (
        "Facility:",  # no facility name is configured on this kiosk: a line to write it in
        "Patient identifier",
        "Write it in by hand",
        f"NORMAL, recorded by {STAFF_NAME}",
        "Reviewed by:",
        "Signature:",
        "not a diagnosis: every result must be reviewed by a clinician.",  # edge.INTENDED_USE
    ):
        assert expected in text, f"{expected!r} is not on the one {paper} page: {text}"
    assert LONG_REF.replace("-", "") in text.replace(" ", "").replace("-", "")  # wrapped, but whole


def test_a_200_mb_file_from_the_page_gets_the_kiosks_own_error_page(
    kiosk: KioskServer, browser: WebDriver, tmp_path: Path
) -> None:
    """waitress refuses it unread; the nurse still sees the kiosk's page saying what to do."""
    huge = tmp_path / "huge.jpg"
    with huge.open("wb") as handle:
        handle.write(b"\xff\xd8\xff")
        handle.truncate(200 * 1024 * 1024)  # sparse: costs no disk
    browser.get(f"http://127.0.0.1:{kiosk.port}/")
    log_in(browser)
    wait_for(browser, "#file").send_keys(str(huge))
    browser.find_element(By.ID, "assess").click()
    message = wait_for(browser, "#error-message", timeout=60).text
    assert message.startswith("The upload is larger than the 40 MB limit. Export the X-ray as JPEG")
    assert browser.find_element(By.ID, "who").text == STAFF_NAME  # the kiosk's page, still logged in


DROP_FILE_JS = """
const [name, b64] = arguments;
const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], name, {type: "image/jpeg"}));
const zone = document.getElementById("dropzone");
for (const type of ["dragenter", "dragover", "drop"]) {
  zone.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: transfer}));
}
return document.getElementById("file").files.length;
"""


def test_an_x_ray_dropped_on_the_page_is_assessed(kiosk: KioskServer, browser: WebDriver) -> None:
    browser.get(f"http://127.0.0.1:{kiosk.port}/")
    log_in(browser)
    wait_for(browser, "#dropzone")
    jpeg = base64.b64encode(xray_bytes(seed=22, width=400, height=480)).decode()
    assert browser.execute_script(DROP_FILE_JS, "dropped.jpg", jpeg) == 1
    assert browser.find_element(By.ID, "dz-text").text == "Ready: dropped.jpg"
    browser.find_element(By.ID, "assess").click()
    assert wait_for(browser, "#label").text in ("NORMAL", "PNEUMONIA")
