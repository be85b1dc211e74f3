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
    with pytest.raises(ValueError, match="'histogram' unknown; known: none, clahe"):
        standardise(film(), "histogram")


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


def test_the_preprocessing_contract_applies_it_after_the_resize():
    pytest.importorskip("cv2")
    data = xray_bytes(seed=5)
    np.testing.assert_array_equal(
        load_model_input(data, 224, "clahe"), standardise(load_model_input(data, 224), "clahe")
    )


def test_without_opencv_a_clahe_bundle_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    with pytest.raises(IntensityUnavailableError, match="opencv-python-headless"):
        standardise(film(), "clahe")
