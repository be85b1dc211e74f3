"""Intensity standardisation: the same function in training and on the kiosk, OpenCV only on demand."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edge.intensity import IntensityUnavailableError, standardise, standardise_all
from edge.preprocess import load_model_input
from lab.synthetic import xray_bytes


def film(seed: int = 3) -> np.ndarray:
    return load_model_input(xray_bytes(seed=seed), 224)


def test_none_hands_back_the_input_itself():
    pixels = film()
    assert standardise(pixels, "none") is pixels
    stack = pixels[np.newaxis]
    assert standardise_all(stack, "none") is stack


def test_an_unknown_method_is_named():
    with pytest.raises(ValueError, match="'sharpen' unknown; known: none, clahe, equalise"):
        standardise(film(), "sharpen")


def test_clahe_keeps_shape_and_dtype_and_spreads_a_dull_film():
    pytest.importorskip("cv2")
    dull = (film() // 4 + 96).astype(np.uint8)  # a quarter of the range, mid-grey: an underexposed copy
    out = standardise(dull, "clahe")
    assert (out.shape, out.dtype) == (dull.shape, np.uint8)
    assert np.ptp(out) > 2 * np.ptp(dull)


def test_a_stack_is_standardised_film_by_film():
    pytest.importorskip("cv2")
    stack = np.stack([film(1), film(2)])
    out = standardise_all(stack, "clahe")
    assert out.shape == stack.shape
    np.testing.assert_array_equal(out[1], standardise(stack[1], "clahe"))


@pytest.mark.parametrize("method", ["clahe", "equalise"])
def test_the_preprocessing_contract_applies_it_after_the_resize(method: str):
    if method == "clahe":
        pytest.importorskip("cv2")
    data = xray_bytes(seed=5)
    np.testing.assert_array_equal(
        load_model_input(data, 224, method), standardise(load_model_input(data, 224), method)
    )


def test_without_opencv_a_clahe_bundle_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    with pytest.raises(IntensityUnavailableError, match="opencv-python-headless"):
        standardise(film(), "clahe")


def test_equalise_undoes_an_exposure_curve():
    """The reason for it: a film and its gamma-curved copy (another site's exposure) come out alike."""
    pixels = film()
    curved = np.round(255.0 * (pixels / 255.0) ** 1.6).astype(np.uint8)
    before = np.abs(curved.astype(int) - pixels)
    out, out_curved = standardise(pixels, "equalise"), standardise(curved, "equalise")
    after = np.abs(out_curved.astype(int) - out)
    assert (out.shape, out.dtype) == (pixels.shape, np.uint8)
    assert np.median(after) == 0 < np.median(before)  # only the dark levels the curve merged still differ
    assert after.mean() < before.mean() / 5


def test_equalise_spreads_the_levels_and_keeps_their_order():
    pixels = (film() // 4 + 96).astype(np.uint8)
    out = standardise(pixels, "equalise")
    assert (out.min(), out.max()) == (0, 255)
    order = np.argsort(pixels.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order].astype(int)) >= 0)


def test_equalise_leaves_a_flat_film_alone_and_needs_no_opencv(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    flat = np.full((8, 8, 1), 77, np.uint8)
    np.testing.assert_array_equal(standardise(flat, "equalise"), flat)
    assert standardise(film(), "equalise").std() > 0
