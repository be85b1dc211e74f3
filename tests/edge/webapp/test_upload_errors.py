"""Answers that used to mislead: DICOM without its preamble, and an upload far over every limit.

waitress refuses a body over its own limit (twice the kiosk's 40 MB) before reading it; the kiosk
must still answer with its own page (the upload form) or JSON (the API), with its security headers.
The rest of the error catalogue (bad_uploads.py) runs on the Flask client and the real server.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient

from edge.bundle import Bundle
from edge.webapp.access.request_guard import CONTENT_SECURITY_POLICY
from tests.tiny_bundle import dicom_bytes, synthetic_xray

from .bad_uploads import MULTIPART, file_body, good_jpeg
from .helpers import post_file, stored_state
from .kiosk_server import KioskServer
from .test_pages import alert_text

STAFF, PIN = "Ada Mensah", "482916"
DECLARED = 200 * 1024 * 1024  # a 200 MB upload


@pytest.fixture(scope="module")
def kiosk(tiny_bundle_int8: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KioskServer]:
    server = KioskServer(
        tiny_bundle_int8.root, tmp_path_factory.mktemp("oversize") / "data", admin=(STAFF, PIN)
    ).start()
    yield server
    server.stop()


def log_in(kiosk: KioskServer) -> tuple[str, str]:
    """(session cookie, CSRF token) of a staff login over HTTP."""
    conn = http.client.HTTPConnection("127.0.0.1", kiosk.port, timeout=60)
    try:
        conn.request("GET", "/login")
        page = conn.getresponse()
        cookie = page.getheader("Set-Cookie", "").split(";")[0]
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.read().decode())
        assert token is not None
        body = f"name={STAFF}&pin={PIN}&csrf_token={token.group(1)}".replace(" ", "+").encode()
        headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
        conn.request("POST", "/login", body=body, headers=headers)
        reply = conn.getresponse()
        reply.read()
        assert reply.status == 302, reply.status
        cookie = reply.getheader("Set-Cookie", "").split(";")[0] or cookie
        conn.request("GET", "/", headers={"Cookie": cookie})
        home = conn.getresponse().read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', home)
        assert token is not None
        return cookie, token.group(1)
    finally:
        conn.close()


def send_oversized(
    kiosk: KioskServer, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """Declare a 200 MB multipart body, send its first kilobytes, and read the kiosk's answer."""
    start = file_body(good_jpeg())[:4096]
    head = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Type: {MULTIPART}",
        f"Content-Length: {DECLARED}",
    ]
    head += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", kiosk.port), timeout=60) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + start)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def test_a_200_mb_upload_to_the_api_gets_the_kiosks_json_413(kiosk: KioskServer) -> None:
    before = stored_state(kiosk.data_dir)
    credential = {"Authorization": f"Bearer {kiosk.api_token}"}
    status, headers, body = send_oversized(
        kiosk, "/api/v1/predict", {"Accept": "application/json", **credential}
    )
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    error = json.loads(body)["error"]
    assert error["code"] == "too_large"
    assert error["message"].startswith("The upload is larger than the 40 MB limit.")
    assert stored_state(kiosk.data_dir) == before
    assert kiosk.request("GET", "/healthz").status == 200  # still serving


def test_a_200_mb_upload_from_the_page_gets_the_kiosks_error_page(kiosk: KioskServer, tmp_path: Path) -> None:
    cookie, token = log_in(kiosk)
    status, headers, body = send_oversized(kiosk, "/assess", {"Cookie": cookie, "X-CSRFToken": token})
    assert status == 413
    assert headers["content-type"].startswith("text/html")
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert headers["x-frame-options"] == "DENY"
    assert alert_text(body).startswith("The upload is larger than the 40 MB limit. Export the X-ray as JPEG")
    assert kiosk.request("GET", "/healthz").status == 200


@pytest.mark.parametrize(
    ("name", "strip"), [("study.dcm", 128), ("study.dcm", 132), ("1.2.840.113619.2.55.3.6046", 128)]
)
def test_a_dicom_without_its_preamble_is_screened(client: FlaskClient, name: str, strip: int) -> None:
    """Some exports drop the 128-byte preamble (and the 'DICM' prefix): pydicom reads them, so do we."""
    film = dicom_bytes(synthetic_xray(seed=41, width=300, height=360).astype(np.uint16) * 16)
    with_preamble = post_file(client, "/api/v1/predict", film, filename="study.dcm")
    without = post_file(client, "/api/v1/predict", film[strip:], filename=name)
    assert with_preamble.status_code == without.status_code == 201, without.json
    for key in ("status", "label", "probability", "detail"):
        assert without.json[key] == with_preamble.json[key]
