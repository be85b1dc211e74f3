"""Resources: one upload must never take a small device down.

The issue's bad files go to a real `python -m edge serve` (waitress, tiny int8 bundle), and the
server's peak resident memory (VmHWM) must stay within the target; and each upload is decoded once.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image

from edge import preprocess
from edge.bundle import Bundle
from tests.tiny_bundle import synthetic_xray

from .bad_uploads import dicom
from .helpers import post_file
from .kiosk_server import KioskServer

#: The issue's target for any single upload the kiosk accepts or refuses (a Raspberry Pi has 1-8 GB).
PEAK_RSS_LIMIT_MB = 250

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status")


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def film(side: int) -> np.ndarray:
    """A chest-X-ray-like film at `side` x `side` (a synthetic film, upscaled)."""
    small = Image.fromarray(synthetic_xray(seed=3, width=600, height=600))
    return np.asarray(small.resize((side, side), Image.Resampling.BILINEAR))


def bad_files() -> Iterator[tuple[str, int, Callable[[], bytes]]]:
    """(name, expected status, maker): built one at a time, so the test itself stays small too."""

    def png16() -> bytes:  # the issue's 112 KB file: 3.4 GB of server memory before
        ramp = np.arange(7000, dtype=np.uint16)
        return png(np.add.outer(ramp, ramp) * np.uint16(4))

    def rgb() -> bytes:  # 1.7 GB before
        pixels = np.zeros((7000, 7000, 3), dtype=np.uint8)
        pixels[..., 0] = np.arange(7000, dtype=np.uint32)[np.newaxis, :] % 256
        pixels[..., 2] = 128
        return png(pixels)

    yield "16-bit-7000.png", 422, png16
    yield "rgb-7000.png", 422, rgb
    yield "film-3000.dcm", 201, lambda: dicom(film(3000))  # 637 MB before
    yield "film-4400.dcm", 201, lambda: dicom(film(4400))  # 1.3 GB before


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "pneumoedge-memory-test"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_the_issues_bad_files_keep_the_server_within_its_memory_target(
    tiny_bundle_int8: Bundle, tmp_path: Path
) -> None:
    kiosk = KioskServer(tiny_bundle_int8.root, tmp_path / "data").start()
    try:
        peaks = {"start": kiosk.peak_rss_mb()}
        for name, status, make in bad_files():
            body, content_type = multipart(name, make())
            reply = kiosk.request("POST", "/api/v1/predict", body, content_type, timeout=300)
            del body
            assert reply.status == status, reply.body[:300]
            if status == 422:
                error = reply.json()["error"]
                assert error["message"].startswith("The image is too big for the kiosk to open. Export")
                assert error["detail"].startswith("The image is too big for this kiosk to open: 7000 x 7000")
            peaks[name] = kiosk.peak_rss_mb()
        print(f"server peak RSS (MB) after each upload: {peaks}")
        assert peaks["film-4400.dcm"] <= PEAK_RSS_LIMIT_MB, peaks
        assert kiosk.request("GET", "/healthz").status == 200  # and it keeps serving
    finally:
        kiosk.stop()


def test_each_upload_is_decoded_once_and_a_refused_film_is_not_encoded(
    client: FlaskClient, small_xray: bytes, colour_photo: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    decodes: list[int] = []
    real_load = preprocess._load_raster

    def counting(data: bytes) -> preprocess.XrayImage:
        decodes.append(len(data))
        return real_load(data)

    monkeypatch.setattr(preprocess, "_load_raster", counting)
    from edge.webapp.records import xray_copies

    encodes: list[int] = []
    real_png = xray_copies.deidentified_png
    monkeypatch.setattr(xray_copies, "deidentified_png", lambda pixels: encodes.append(1) or real_png(pixels))
    assert post_file(client, "/api/v1/predict", small_xray).status_code == 201
    assert (len(decodes), len(encodes)) == (1, 1)
    assert post_file(client, "/api/v1/predict", colour_photo).get_json()["status"] == "rejected"
    assert (len(decodes), len(encodes)) == (2, 1)  # a refused film: decoded once, never encoded
