"""Fixtures for the kiosk web app: an app over a temporary data folder and the tiny int8 bundle,
its test client, and small helpers to upload files and to see what the kiosk has stored."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from edge.bundle import Bundle
from edge.webapp import create_app, images, store
from tests.tiny_bundle import encode

AppFactory = Callable[..., Flask]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "kiosk-data"


@pytest.fixture
def make_app(tiny_bundle_int8: Bundle, data_dir: Path) -> AppFactory:
    """Factory: an app on the tiny int8 bundle; keyword arguments override the config."""

    def make(**overrides: Any) -> Flask:
        config = {
            "TESTING": True,
            "DATA_DIR": str(data_dir),
            "MODEL_DIR": str(tiny_bundle_int8.root),
            "SECRET_KEY": "test-secret",
            "WTF_CSRF_ENABLED": False,
            **overrides,
        }
        return create_app(config)

    return make


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def small_xray(xray_bytes: Callable[..., bytes]) -> bytes:
    """A small synthetic X-ray JPEG that passes the quality gate (quick to score)."""
    return xray_bytes(seed=7, width=300, height=360)


@pytest.fixture
def colour_photo() -> bytes:
    """A colourful photograph: the quality gate refuses it ('cannot assess')."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(300, 300, 3), dtype=np.uint8)
    return encode(pixels, "JPEG")


def post_file(
    client: FlaskClient,
    url: str,
    data: bytes | None,
    filename: str = "xray.jpg",
    case_ref: str | None = None,
    **kwargs: Any,
) -> TestResponse:
    """POST a multipart upload as the page and the API expect it (`data=None`: no file field)."""
    form: dict[str, Any] = {}
    if data is not None:
        form["file"] = (io.BytesIO(data), filename)
    if case_ref is not None:
        form["case_ref"] = case_ref
    return client.post(url, data=form, content_type="multipart/form-data", **kwargs)


def stored_state(data_dir: Path) -> tuple[int, list[str]]:
    """(number of case rows, sorted files under images/): what an upload may change."""
    conn = sqlite3.connect(store.db_path(data_dir))
    try:
        rows = conn.execute("SELECT count(*) FROM cases").fetchone()[0]
    finally:
        conn.close()
    folder = images.images_dir(data_dir)
    files = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    return int(rows), files
