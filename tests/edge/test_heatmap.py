"""Heatmap layers: the hot spot lands where the evidence is, see-through where there is none, small,
and blended over the X-ray on request exactly as the page lays it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edge.heatmap import (
    ALPHA,
    COLORMAP,
    DISPLAY_LONG_SIDE,
    LAYER_LONG_SIDE,
    MAX_ALPHA,
    display_size,
    normalise_cam,
    overlay,
    render,
)
from lab.synthetic import synthetic_xray


def decode_rgb(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"))


def decode_rgba(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG" and img.mode == "P"  # one byte a pixel: the evidence level
        return np.asarray(img.convert("RGBA"))


@pytest.mark.parametrize(("row", "col"), [(1, 5), (5, 1), (3, 3)])
def test_hot_spot_lands_where_the_evidence_is(row, col):
    cam = np.full((7, 7), -1.0, dtype=np.float32)
    cam[row, col] = 4.0
    layer = render(700, 840, cam)
    for heat in (layer.normalised, decode_rgba(layer.png)[..., 3].astype(float)):
        y, x = np.unravel_index(np.argmax(heat), heat.shape)
        cell_h, cell_w = heat.shape[0] / 7, heat.shape[1] / 7
        assert int(y // cell_h) == row
        assert int(x // cell_w) == col


def test_layer_is_see_through_where_there_is_no_evidence_and_coloured_where_there_is():
    cam = np.zeros((7, 7), dtype=np.float32)
    cam[0, 0] = 1.0
    rgba = decode_rgba(render(700, 700, cam).png).astype(int)
    hot, cold = rgba[:5, :5], rgba[-30:, -30:]
    assert np.all(cold[..., 3] == 0)
    assert hot[..., 3].max() == round(255 * MAX_ALPHA)
    np.testing.assert_array_equal(hot[0, 0, :3], COLORMAP[255])


def test_layer_is_small_and_keeps_the_aspect_ratio():
    cam = np.ones((7, 7), dtype=np.float32)
    with Image.open(io.BytesIO(render(2000, 2400, cam).png)) as img:
        assert img.size == (213, LAYER_LONG_SIDE)
    with Image.open(io.BytesIO(render(200, 224, cam).png)) as img:
        assert img.size == (200, 224)  # never bigger than the X-ray


def test_overlay_blends_the_layer_over_the_xray_at_display_size():
    cam = np.zeros((7, 7), dtype=np.float32)
    cam[0, 0] = 1.0
    gray = np.full((1400, 1400), 100, dtype=np.uint8)
    rgb = decode_rgb(overlay(gray, render(1400, 1400, cam).png)).astype(int)
    assert rgb.shape[:2] == (DISPLAY_LONG_SIDE, DISPLAY_LONG_SIDE)
    hot, cold = rgb[:10, :10], rgb[-200:, -200:]
    assert np.abs(hot[..., 0] - hot[..., 2]).mean() > 20  # coloured
    assert np.all(cold == 100)  # untouched gray
    expected = np.rint(100 * (1 - MAX_ALPHA) + COLORMAP[255] * MAX_ALPHA)
    np.testing.assert_allclose(hot[0, 0], expected, atol=3)


def test_display_size_keeps_the_aspect_ratio():
    assert display_size(3000, 1500) == (768, 384)
    assert display_size(300, 150) == (300, 150)


def test_negative_only_map_has_no_evidence_to_show():
    cam = -np.abs(np.random.default_rng(0).normal(size=(7, 7))).astype(np.float32)
    assert not normalise_cam(cam).any()
    assert not decode_rgba(render(300, 300, cam).png)[..., 3].any()
    gray = synthetic_xray(3, 300, 300)
    rgb = decode_rgb(overlay(gray, render(300, 300, cam).png))
    np.testing.assert_array_equal(rgb[..., 0], gray)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_normalised_map_spans_zero_to_one():
    cam = np.linspace(-2, 3, 49, dtype=np.float32).reshape(7, 7)
    norm = normalise_cam(cam)
    assert norm.min() == 0.0
    assert norm.max() == pytest.approx(1.0)


def test_colormap_brightens_monotonically_and_opacity_grows_with_evidence():
    luminance = COLORMAP.astype(float) @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(luminance) >= -1e-6)
    assert COLORMAP.shape == (256, 3)
    assert ALPHA[0] == 0 and list(ALPHA) == sorted(ALPHA)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="2-D activation map"):
        render(10, 10, np.zeros((1, 7, 7)))
    with pytest.raises(ValueError, match="non-empty image size"):
        render(0, 10, np.zeros((7, 7)))
    with pytest.raises(ValueError, match="2-D uint8"):
        overlay(np.zeros((10, 10, 3), dtype=np.uint8), render(10, 10, np.zeros((7, 7))).png)
