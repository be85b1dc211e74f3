"""Shared fixtures: the committed tiny real model bundles (tests/fixtures) and synthetic X-ray files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from edge.bundle import Bundle
from tests import tiny_bundle


@pytest.fixture(scope="session")
def tiny_bundle_int8(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A full-integer tiny bundle (uint8 input, int8 outputs) with the real signature."""
    return tiny_bundle.copy_fixture("int8", tmp_path_factory.mktemp("bundles") / "tiny-int8")


@pytest.fixture(scope="session")
def tiny_bundle_float(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """The same tiny model converted to float32."""
    return tiny_bundle.copy_fixture("float32", tmp_path_factory.mktemp("bundles") / "tiny-float32")


@pytest.fixture
def xray_bytes() -> Callable[..., bytes]:
    """Factory: xray_bytes(seed=0, fmt="JPEG", width=1000, height=1200, lesion=None) -> file bytes."""
    return tiny_bundle.xray_bytes


@pytest.fixture
def xray_file(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write a synthetic X-ray under tmp_path and return its path."""

    def make(name: str = "xray.jpeg", seed: int = 0, **kwargs: object) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
        path.write_bytes(tiny_bundle.xray_bytes(seed=seed, fmt=fmt, **kwargs))
        return path

    return make
