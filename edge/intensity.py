"""Intensity standardisation of the model input, as a bundle asks for it.

Sites differ in exposure curve and local contrast, and the training split's two NORMAL batches
differ the same way (the new cohort's false alarms come from one of them). CLAHE (contrast-limited
adaptive histogram equalisation, OpenCV's) maps every film to a standard local contrast before the
model sees it, in training (after the random acquisition, so it undoes what a site would do) and
on the kiosk alike. It runs on the 224 x 224 model input, so it costs well under a millisecond.

Global histogram equalisation (`equalise`) maps each film through its own cumulative histogram:
any increasing tone curve applied before it (exposure, gamma, contrast) gives the same output, up to
levels the curve merged. That is histogram matching to a fixed reference, less a fixed curve the
network absorbs. It is plain numpy (OpenCV's equalizeHist formula), so it costs the kiosk nothing.

OpenCV (opencv-python-headless, 40-60 MB against Pillow's 7 MB) is imported only when a bundle
asks for CLAHE: a kiosk whose bundle says `none` never needs it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NONE = "none"
CLAHE = "clahe"
EQUALISE = "equalise"
METHODS = (NONE, CLAHE, EQUALISE)
#: OpenCV's usual CLAHE settings for radiographs: clip at 2x the mean histogram bin, 8 x 8 tiles.
CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILES = (8, 8)


class IntensityUnavailableError(RuntimeError):
    """The bundle needs OpenCV and this environment does not have it."""


def check_method(method: str) -> str:
    """The method, or a ValueError naming the known ones."""
    if method not in METHODS:
        raise ValueError(f"intensity standardisation {method!r} unknown; known: {', '.join(METHODS)}")
    return method


def standardise(pixels: np.ndarray, method: str) -> np.ndarray:
    """uint8 (h, w) or (h, w, 1) in, the same shape out; `none` returns the input itself."""
    if check_method(method) == NONE:
        return pixels
    if method == EQUALISE:
        return _equalise(pixels)
    clahe = _clahe()
    plane = np.ascontiguousarray(pixels.reshape(pixels.shape[:2]))
    return clahe.apply(plane).reshape(pixels.shape)


def standardise_all(images: np.ndarray, method: str) -> np.ndarray:
    """A stack (n, h, w, 1) film by film; `none` returns the stack itself."""
    if check_method(method) == NONE or len(images) == 0:
        return images
    return np.stack([standardise(image, method) for image in images])


def _equalise(pixels: np.ndarray) -> np.ndarray:
    """Each level to the share of pixels at or below it, the darkest level to 0; a flat film stays."""
    cdf = np.cumsum(np.bincount(pixels.ravel(), minlength=256))
    darkest = int(cdf[cdf > 0][0])
    if darkest == pixels.size:
        return pixels
    lut = np.round((cdf - darkest) / (pixels.size - darkest) * 255.0)
    return np.clip(lut, 0, 255).astype(np.uint8)[pixels]


def _clahe() -> Any:  # cv2.CLAHE: OpenCV is imported only here
    try:
        import cv2
    except ImportError as e:
        raise IntensityUnavailableError(
            "this bundle standardises intensity with CLAHE, which needs OpenCV: "
            "pip install opencv-python-headless"
        ) from e
    return cv2.createCLAHE(clipLimit=CLAHE_CLIP_LIMIT, tileGridSize=CLAHE_TILES)
