"""Fixtures for the kiosk web app: an app over a temporary data folder and the tiny int8 bundle,
its test client, and test images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from edge.bundle import Bundle
from edge.webapp import create_app
from tests.tiny_bundle import encode

from .helpers import ADMIN, ADMIN_PIN, NURSE, NURSE_PIN, AppFactory, add_staff, login


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
            "MIN_FREE_MB": 2,  # a 1 MB space reserve per test app, not the default's 16 MB
            **overrides,
        }
        return create_app(config)

    return make


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A browser logged in as a nurse (staff role); pages need a personal login."""
    add_staff(app, NURSE, NURSE_PIN, "staff")
    browser = app.test_client()
    assert login(browser).status_code == 302
    return browser


@pytest.fixture
def admin_client(app: Flask, client: FlaskClient) -> FlaskClient:
    """Another browser, logged in as an administrator (the nurse's login exists too)."""
    add_staff(app, ADMIN, ADMIN_PIN, "admin")
    browser = app.test_client()
    assert login(browser, ADMIN, ADMIN_PIN).status_code == 302
    return browser


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
