"""Heatmap overlays: the hot spot lands where the evidence is, at display size, as a real PNG."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edge.heatmap import COLORMAP, DISPLAY_LONG_SIDE, display_size, normalise_cam, render
from tests.tiny_bundle import synthetic_xray


def decode(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"))


@pytest.mark.parametrize(("row", "col"), [(1, 5), (5, 1), (3, 3)])
def test_hot_spot_lands_where_the_evidence_is(row, col):
    cam = np.full((7, 7), -1.0, dtype=np.float32)
    cam[row, col] = 4.0
    gray = synthetic_xray(1, 700, 840)
    heat = render(gray, cam).normalised
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    cell_h, cell_w = heat.shape[0] / 7, heat.shape[1] / 7
    assert int(y // cell_h) == row
    assert int(x // cell_w) == col


def test_overlay_is_coloured_only_where_evidence_is():
    cam = np.zeros((7, 7), dtype=np.float32)
    cam[0, 0] = 1.0
    gray = np.full((700, 700), 100, dtype=np.uint8)
    rgb = decode(render(gray, cam).png).astype(int)
    hot, cold = rgb[:30, :30], rgb[-100:, -100:]
    assert np.abs(hot[..., 0] - hot[..., 2]).mean() > 20  # coloured
    assert np.all(cold == 100)  # untouched gray


def test_large_images_are_downscaled_for_display_small_ones_kept():
    cam = np.ones((7, 7), dtype=np.float32)
    big = decode(render(synthetic_xray(2, 2000, 2400), cam).png)
    assert big.shape[:2] == (DISPLAY_LONG_SIDE, 640)
    small = decode(render(synthetic_xray(2, 224, 224), cam).png)
    assert small.shape[:2] == (224, 224)


def test_display_size_keeps_the_aspect_ratio():
    assert display_size(3000, 1500) == (768, 384)
    assert display_size(300, 150) == (300, 150)


def test_negative_only_map_has_no_evidence_to_show():
    cam = -np.abs(np.random.default_rng(0).normal(size=(7, 7))).astype(np.float32)
    assert not normalise_cam(cam).any()
    gray = synthetic_xray(3, 300, 300)
    rgb = decode(render(gray, cam).png)
    np.testing.assert_array_equal(rgb[..., 0], gray)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_normalised_map_spans_zero_to_one():
    cam = np.linspace(-2, 3, 49, dtype=np.float32).reshape(7, 7)
    norm = normalise_cam(cam)
    assert norm.min() == 0.0
    assert norm.max() == pytest.approx(1.0)


def test_colormap_brightens_monotonically():
    luminance = COLORMAP.astype(float) @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(luminance) >= -1e-6)
    assert COLORMAP.shape == (256, 3)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="2-D uint8"):
        render(np.zeros((10, 10, 3), dtype=np.uint8), np.zeros((7, 7)))
    with pytest.raises(ValueError, match="2-D activation map"):
        render(np.zeros((10, 10), dtype=np.uint8), np.zeros((1, 7, 7)))
