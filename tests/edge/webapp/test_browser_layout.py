"""Every page at 800 x 480 in headless Chromium: nothing wider than the screen, every touch target
at least 48 px, and the result's diagnosis buttons on screen without scrolling, with the longest
case reference the kiosk takes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge.bundle import Bundle, write_bundle
from tests.tiny_bundle import encode, xray_bytes

from .kiosk_server import KioskServer
from .test_browser import (  # noqa: F401  (browser and downloads: the 800 x 480 Chromium fixtures)
    ACCESS_CODE,
    HEIGHT,
    LONG_REF,
    STAFF_NAME,
    STAFF_PIN,
    WIDTH,
    browser,
    downloads,
    fully_visible,
    log_in,
    screenshot,
    wait_for,
)
from .test_browser_display import predict

pytestmark = pytest.mark.browser

#: What the page's layout gets wrong, as a dict: elements wider than the screen, small targets.
LAYOUT_PROBLEMS = """
const vw = innerWidth;
const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
    (e.className && typeof e.className === 'string' ? '.' + e.className.trim().replace(/\\s+/g, '.') : '');
const shown = e => {
  const r = e.getBoundingClientRect(), s = getComputedStyle(e);
  return r.width > 1 && r.height > 1 && s.visibility !== 'hidden' && s.opacity !== '0';
};
const wide = [...document.querySelectorAll('body *')]
  .filter(e => shown(e) && e.getBoundingClientRect().right > vw + 0.5).map(name);
const targets = 'button, select, a.button, summary.button, label.switch, ' +
    'input:not([type=hidden]):not([type=checkbox]):not([type=file])';
const small = [...document.querySelectorAll(targets)]
  .filter(e => shown(e) && e.getBoundingClientRect().height < 47.5)
  .map(e => name(e) + ' ' + Math.round(e.getBoundingClientRect().height) + 'px');
return {scrolls_sideways: document.documentElement.scrollWidth > vw, wide: wide, small: small};
"""


@pytest.fixture(scope="module")
def uncertain_bundle(tiny_bundle_int8: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """The tiny bundle with every accepted film an uncertain referral: the longest result page.

    Platt slope 0 maps every logit to 0.5, inside the band 0.4-0.6."""
    band = {"slope": 0.0, "intercept": 0.0, "description": "layout test", "refer_band": {"upper": 0.6}}
    kept = {k: v for k, v in tiny_bundle_int8.metadata.items() if k not in ("format", "model_sha256")}
    metadata = {**kept, "threshold": 0.4, "calibration": band}
    out = tmp_path_factory.mktemp("uncertain") / "tiny-uncertain"
    return write_bundle(out, tiny_bundle_int8.model_path.read_bytes(), metadata)


@pytest.fixture(scope="module")
def kiosk(uncertain_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KioskServer]:
    server = KioskServer(
        uncertain_bundle.root,
        tmp_path_factory.mktemp("browser-layout") / "data",
        ACCESS_CODE,
        admin=(STAFF_NAME, STAFF_PIN),
    )
    server.start()
    yield server
    server.stop()


def check_layout(browser, tmp_path: Path, name: str) -> None:  # noqa: F811  (the imported fixture)
    size = browser.execute_script("return [innerWidth, innerHeight]")
    assert size == [WIDTH, HEIGHT]
    screenshot(browser, tmp_path, f"layout-{name}")
    problems = browser.execute_script(LAYOUT_PROBLEMS)
    assert problems == {"scrolls_sideways": False, "wide": [], "small": []}, name


def test_every_page_fits_the_800_by_480_touchscreen(kiosk: KioskServer, browser, tmp_path: Path) -> None:  # noqa: F811
    base = f"http://127.0.0.1:{kiosk.port}"
    ok = predict(kiosk, xray_bytes(seed=51, width=1000, height=1200), LONG_REF)
    colours = np.random.default_rng(5).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    refused = predict(kiosk, encode(colours, "JPEG"), "OPD-2026-00999")
    browser.get(f"{base}/login")
    wait_for(browser, "#name")
    check_layout(browser, tmp_path, "login")
    log_in(browser)
    pages = {
        "upload": "/",
        "history": "/history",
        "refused": f"/cases/{refused['id']}",
        "report": f"/cases/{ok['id']}/report",
        "staff": "/staff",
        "audit": "/audit",
        "api-tokens": "/staff/api-tokens",
        "result": f"/cases/{ok['id']}",
    }
    for name, path in pages.items():
        browser.get(base + path)
        wait_for(browser, "footer")
        check_layout(browser, tmp_path, name)
    assert ok["uncertain"] is True  # the result page with its "Uncertain: refer" line
    for element in ("label", "probability", "uncertain", "confirm-normal", "confirm-pneumonia", "report"):
        assert fully_visible(browser, element), element  # the result page: no scrolling needed
    browser.find_element("id", "confirm-pneumonia").click()
    wait_for(browser, "#confirm-yes")
    check_layout(browser, tmp_path, "confirm")
    assert fully_visible(browser, "confirm-yes") and fully_visible(browser, "confirm-cancel")
