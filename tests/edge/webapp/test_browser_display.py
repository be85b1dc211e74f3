"""A real browser on the result and history screens: the heatmap's switch, strength and colour
scale, a refusal in plain words with its thumbnail, and local times on one line at 800 x 480."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge.bundle import Bundle
from tests.tiny_bundle import encode, xray_bytes

from .kiosk_server import KioskServer
from .test_browser import (  # noqa: F401  (browser and downloads: the 800 x 480 Chromium fixtures)
    ACCESS_CODE,
    STAFF_NAME,
    STAFF_PIN,
    browser,
    downloads,
    log_in,
    screenshot,
    wait_for,
)

pytestmark = pytest.mark.browser

ZONE = "Asia/Kathmandu"  # UTC+05:45: shown as "+0545", the longest kind of zone name
BOUNDARY = "display-test-boundary"


@pytest.fixture(scope="module")
def kiosk(tiny_bundle_int8: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KioskServer]:
    server = KioskServer(
        tiny_bundle_int8.root,
        tmp_path_factory.mktemp("browser-display") / "data",
        ACCESS_CODE,
        admin=(STAFF_NAME, STAFF_PIN),
        extra_args=("--timezone", ZONE),
    )
    server.start()
    yield server
    server.stop()


def predict(kiosk: KioskServer, data: bytes, case_ref: str) -> dict:
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="case_ref"\r\n\r\n{case_ref}\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    reply = kiosk.request("POST", "/api/v1/predict", body, f"multipart/form-data; boundary={BOUNDARY}")
    assert reply.status == 201, reply.body
    return reply.json()


def style(driver, element_id: str, prop: str) -> str:
    return driver.execute_script(
        "return getComputedStyle(document.getElementById(arguments[0]))[arguments[1]];", element_id, prop
    )


def test_heatmap_switch_strength_and_colour_scale(kiosk: KioskServer, browser, tmp_path: Path) -> None:  # noqa: F811  (the imported fixture)
    case = predict(kiosk, xray_bytes(seed=41, width=1000, height=1200), "HEAT-1")
    browser.get(f"http://127.0.0.1:{kiosk.port}/cases/{case['id']}")
    log_in(browser)
    wait_for(browser, "#heat-layer")
    for image in ("xray-image", "heat-layer"):
        assert browser.execute_script(
            "const i = document.getElementById(arguments[0]); return i.complete && i.naturalWidth;", image
        )
    base, layer = (
        browser.execute_script(
            "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
            "return [r.left, r.top, r.width, r.height].map(Math.round);",
            image,
        )
        for image in ("xray-image", "heat-layer")
    )
    assert base == layer and base[2] > 100  # the layer lies exactly over the X-ray
    assert style(browser, "heat-layer", "opacity") == "1"
    assert style(browser, "heat-layer", "visibility") == "visible"
    screenshot(browser, tmp_path, "heatmap-on")

    slider = browser.find_element("id", "heat-opacity")
    assert slider.is_displayed()  # the script shows the slider; without it only the switch is there
    browser.execute_script("arguments[0].value = 30; arguments[0].dispatchEvent(new Event('input'));", slider)
    assert style(browser, "heat-layer", "opacity") == "0.3"

    browser.find_element("css selector", "label[for=show-heatmap]").click()  # the switch: plain HTML + CSS
    assert style(browser, "heat-layer", "visibility") == "hidden"
    assert not slider.is_displayed()
    screenshot(browser, tmp_path, "heatmap-off")
    browser.find_element("css selector", "label[for=show-heatmap]").click()
    assert style(browser, "heat-layer", "visibility") == "visible"

    legend = browser.find_element("id", "legend")
    assert legend.is_displayed() and "low" in legend.text and "high attention" in legend.text
    scale = browser.find_element("css selector", "#legend .scale")
    assert scale.size["width"] >= 100
    assert "linear-gradient" in scale.value_of_css_property("background-image")
    bottom = browser.execute_script("return document.getElementById('legend').getBoundingClientRect().bottom")
    assert bottom <= 480  # on the 800 x 480 screen without scrolling


def test_a_refusal_is_plain_with_a_thumbnail(kiosk: KioskServer, browser, tmp_path: Path) -> None:  # noqa: F811
    colours = np.random.default_rng(5).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    case = predict(kiosk, encode(colours, "JPEG"), "PHOTO-1")
    assert case["status"] == "rejected"
    browser.get(f"http://127.0.0.1:{kiosk.port}/cases/{case['id']}")
    log_in(browser)
    assert wait_for(browser, "#reason").text.startswith("This is a colour picture, not an X-ray image.")
    assert "colourfulness" in browser.find_element("id", "technical").text
    assert browser.execute_script(
        "const i = document.getElementById('refused-thumb'); return i.complete && i.naturalWidth;"
    )
    screenshot(browser, tmp_path, "refused")


def test_history_times_are_local_and_on_one_line_at_800_by_480(kiosk: KioskServer, browser) -> None:  # noqa: F811  (the imported fixture)
    for k in range(3):
        predict(kiosk, xray_bytes(seed=50 + k, width=300, height=360), f"WARD12-LONG7-REFERENCE-{k:04d}")
    browser.get(f"http://127.0.0.1:{kiosk.port}/history")
    log_in(browser)
    wait_for(browser, "td.time a")
    assert "Time (+0545)" in browser.find_element("css selector", "thead").text
    cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('td.time a')).map(a =>"
        " [a.textContent, a.getClientRects().length, a.closest('tr').getBoundingClientRect().height]);"
    )
    assert len(cells) >= 3
    for text, line_boxes, row_height in cells:
        assert text.endswith("+0545")
        assert line_boxes == 1, text  # one line: the time never wraps
        assert row_height <= 49, (text, row_height)  # the 48 px touch row, not two lines of it
