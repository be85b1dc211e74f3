"""The quality gate: refuse what the model cannot honestly assess, and say why.

Before the model: colour photographs, blank or near-uniform images, images too small to hold a
chest X-ray, and extreme aspect ratios. After the model: images whose embedding lies far from the
training X-rays' (the bundle's `ood` section), which catches screenshots, documents and other
gray pictures the simple checks let through. A refused image gets no label, because a label on an
image the model was never meant to see would be a guess dressed as a result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.preprocess import XrayImage

log = logging.getLogger(__name__)

COLOUR_PHOTO = "colour_photo"
BLANK = "blank"
TOO_SMALL = "too_small"
EXTREME_ASPECT = "extreme_aspect"
OUT_OF_DISTRIBUTION = "out_of_distribution"

#: Long side the pixel statistics are computed on; plenty for contrast, cheap for a 9 MP file.
_STATS_LONG_SIDE = 512


@dataclass(frozen=True)
class QualityThresholds:
    """Gate limits. Measured on the 5,216 training X-rays (benchmarks/quality_gate.py, docs/edge-core.md)."""

    #: Largest mean |channel difference| of a gray image; the training X-rays all measure 0.0,
    #: exported clinic JPEGs with chroma noise a few units, colour photos usually 10+.
    max_colourfulness: float = 6.0
    #: Smallest gray-level standard deviation; the training X-rays measure 19.9 at the lowest.
    min_std: float = 8.0
    #: Smallest 1st-to-99th percentile gray range; the training X-rays measure 85 at the lowest.
    min_dynamic_range: float = 40.0
    #: Fewest pixels on the short side; the training X-rays are 224 x 224 and must pass.
    min_side: int = 192
    #: Largest long side / short side; chest X-rays are close to square.
    max_aspect_ratio: float = 2.0
    #: Apply the bundle's out-of-distribution check (when the bundle has an `ood` section).
    check_ood: bool = True


@dataclass(frozen=True)
class GateResult:
    """Flags raised (empty when the image passed) and the human reason for them."""

    flags: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.flags

    @property
    def reason(self) -> str | None:
        """The first flag: a stable machine code for the refusal."""
        return self.flags[0] if self.flags else None

    @property
    def detail(self) -> str:
        return "cannot assess: " + "; ".join(self.messages) if self.flags else ""

    def __add__(self, other: GateResult) -> GateResult:
        return GateResult(self.flags + other.flags, self.messages + other.messages)


@dataclass(frozen=True)
class OodStats:
    """The bundle's out-of-distribution statistics: per-dimension mean/std and an rms_z threshold."""

    mean: np.ndarray
    std: np.ndarray
    threshold: float

    @classmethod
    def from_metadata(cls, ood: dict[str, Any] | None) -> OodStats | None:
        """Read a bundle's `ood` section; None when the bundle has none."""
        if not ood:
            return None
        if ood.get("statistic", "rms_z") != "rms_z":
            raise ValueError(f"ood statistic {ood.get('statistic')!r} is unknown; this kiosk knows 'rms_z'")
        mean = np.asarray(ood["mean"], dtype=np.float64)
        std = np.asarray(ood["std"], dtype=np.float64)
        if mean.shape != std.shape or mean.ndim != 1 or np.any(std <= 0):
            raise ValueError(
                f"ood mean/std must be equal-length lists with std > 0, got {mean.shape} and {std.shape}"
            )
        return cls(mean, std, float(ood["threshold"]))

    def score(self, embedding: np.ndarray) -> float:
        """rms_z = sqrt(mean(((embedding - mean) / std) ** 2))."""
        vector = np.asarray(embedding, dtype=np.float64).reshape(-1)
        if vector.shape != self.mean.shape:
            raise ValueError(f"embedding has {vector.size} values, the ood statistics {self.mean.size}")
        return float(rms_z(vector[np.newaxis], self.mean, self.std)[0])


def rms_z(embeddings: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The ood statistic for each row of `embeddings` (n, d)."""
    return np.sqrt(np.mean(((np.asarray(embeddings, dtype=np.float64) - mean) / std) ** 2, axis=1))


def check_image(image: XrayImage, limits: QualityThresholds) -> GateResult:
    """The checks that need no model: colour, contrast, size, shape."""
    result = GateResult()
    if image.colourfulness > limits.max_colourfulness:
        result += GateResult(
            (COLOUR_PHOTO,),
            (
                f"this looks like a colour photograph, not a chest X-ray (colourfulness "
                f"{image.colourfulness:.1f}, gray images are below {limits.max_colourfulness:g})",
            ),
        )
    short, long = sorted((image.width, image.height))
    if short < limits.min_side:
        result += GateResult(
            (TOO_SMALL,),
            (
                f"the image is only {image.width} x {image.height} pixels, at least "
                f"{limits.min_side} pixels on each side are needed",
            ),
        )
    if long / short > limits.max_aspect_ratio:
        result += GateResult(
            (EXTREME_ASPECT,),
            (
                f"the image is {long / short:.1f} times longer than wide, a chest X-ray is "
                f"close to square (at most {limits.max_aspect_ratio:g}:1)",
            ),
        )
    std, spread = _contrast(image.pixels)
    if std < limits.min_std or spread < limits.min_dynamic_range:
        result += GateResult(
            (BLANK,),
            (
                f"the image is blank or nearly uniform (gray-level std {std:.1f}, needs "
                f"{limits.min_std:g}, 1-99% range {spread:.0f}, needs {limits.min_dynamic_range:g})",
            ),
        )
    return result


def check_embedding(embedding: np.ndarray, ood: OodStats | None, limits: QualityThresholds) -> GateResult:
    """The check after the model: is the image's embedding near the training X-rays'?"""
    if ood is None or not limits.check_ood:
        return GateResult()
    score = ood.score(embedding)
    if score <= ood.threshold:
        return GateResult()
    return GateResult(
        (OUT_OF_DISTRIBUTION,),
        (
            f"the image does not look like the chest X-rays the model was trained on "
            f"(out-of-distribution score {score:.2f}, limit {ood.threshold:.2f})",
        ),
    )


def _contrast(pixels: np.ndarray) -> tuple[float, float]:
    """Gray-level std and 1st-99th percentile range, on a strided view for big images."""
    step = max(1, max(pixels.shape) // _STATS_LONG_SIDE)
    sample = pixels[::step, ::step].astype(np.float32)
    low, high = np.percentile(sample, [1, 99])
    return float(sample.std()), float(high - low)
