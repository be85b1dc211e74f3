"""A bundle built from a local wheelhouse installs offline into a fresh venv, and its kiosk scores.

Slow, and needs the kiosk's wheelhouse for this machine (`make wheelhouse`).
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.firmware.conftest import REPO, Device, build_bundle, free_port, script_env, serving_sha256

pytestmark = pytest.mark.slow

SHIPPED_MODEL = REPO / "models" / "mobilenetv2-int8"
REAL_XRAYS = REPO.parent / "shared" / "data" / "chest_xray" / "train" / "PNEUMONIA"


def _api_token(device: Device) -> str:
    """An API token in the device's database, as an administrator makes one on the Staff page."""
    from edge.webapp.access import api_tokens
    from edge.webapp.records import database

    conn = database.connect(database.db_path(device.env["DATA_DIR"]))
    try:
        return api_tokens.create(conn, "firmware test", database.Actor(None, "test set-up"))[1]
    finally:
        conn.close()


def _predict(url: str, image: Path, token: str) -> tuple[int, dict]:
    """POST one X-ray to the kiosk's JSON API as multipart form data, with an API token."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{image.name}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url,
        data=body,
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Authorization": f"Bearer {token}",
        },
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status, json.loads(response.read())


def _check_release_scores(device: Device, image: Path, expect_ok: bool = False) -> None:
    """The release's own venv scores `image` from the command line and through the kiosk's API."""
    release = device.prefix / "current"
    python = release / "venv/bin/python"
    isolated = subprocess.run([str(python), "-c", "import tensorflow"], capture_output=True, check=False)
    assert isolated.returncode != 0, "the release venv must hold only the bundle's wheels"
    model = next((release / "models").iterdir())
    scored = subprocess.run(  # the console entry point, from a folder that holds no code
        [str(release / "venv/bin/pneumoedge"), "score", "--model", str(model), str(image)],
        cwd=image.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert scored.returncode == 0, scored.stderr
    (row,) = list(csv.DictReader(io.StringIO(scored.stdout)))
    assert row["model_sha256"] == serving_sha256(device.url)
    status, case = _predict(device.url.replace("/healthz", "/api/v1/predict"), image, _api_token(device))
    assert status == 201
    assert case["model_sha256"] == row["model_sha256"] and case["status"] == row["status"]
    if expect_ok:
        assert case["status"] == "ok", case
    if case["status"] == "ok":
        assert 0.0 <= case["probability"] <= 1.0 and case["label"] in {"NORMAL", "PNEUMONIA"}
    else:  # a tiny test model may call a synthetic image out of distribution: refused, with a reason
        assert case["probability"] is None and case["detail"]


def test_offline_bundle_installs_and_the_kiosk_scores(device: Device, xray_file) -> None:
    log = (device.root / "var/log/pneumoedge/provision.log").read_text()
    assert "installing wheels from the bundle only (--no-index)" in log
    assert "ai_edge_litert.interpreter imports" in log
    _check_release_scores(device, xray_file())


@pytest.mark.skipif(not (SHIPPED_MODEL / "bundle.json").is_file(), reason=f"{SHIPPED_MODEL} is not there yet")
def test_the_shipped_model_installs_and_scores(edge_wheelhouse: Path, tmp_path: Path, xray_file) -> None:
    tarball = build_bundle(script_env(tmp_path), SHIPPED_MODEL, tmp_path / "dist", "1.0.0", edge_wheelhouse)
    device = Device(tmp_path, free_port())
    device.provision(tarball)
    device.start()
    real = sorted(REAL_XRAYS.glob("*.jpeg"))[:1]
    try:
        # A real chest X-ray must be scored "ok" by the shipped model; a synthetic one may be refused.
        _check_release_scores(device, real[0] if real else xray_file(), expect_ok=bool(real))
    finally:
        device.stop()
