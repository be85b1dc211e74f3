"""Per-variant figures measured through the converted TFLite model itself, on the kiosk's input path.

Quantisation and pruning move the probabilities, so each variant gets its own operating threshold
(the run's rule, on the validation patients), its own validation metrics and its own out-of-distribution
statistics (the embedding of that variant, on training images).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import OUTPUT_EMBEDDING
from edge.calibration import Head, sigmoid
from edge.metrics import binary_metrics, choose_threshold
from edge.quality import rms_z
from edge.runtime import TfliteModel

log = logging.getLogger(__name__)

#: Percentile of held-out training images' rms_z used as the ood threshold: ~0.5% of real X-rays refused.
OOD_PERCENTILE = 99.5
#: Smallest std per embedding dimension, relative to the median std. A channel that rarely fires in
#: training has a tiny std, and one image that fires it gets a huge z: with a 1% floor, 6% of unseen
#: X-rays were refused. Half the median keeps every dimension's weight bounded.
STD_FLOOR_FRACTION = 0.5


@dataclass
class Scores:
    """A model's outputs over a set of images: the head's logits and P(PNEUMONIA) (n,), embeddings (n, d)."""

    logits: np.ndarray
    embeddings: np.ndarray

    @property
    def probabilities(self) -> np.ndarray:
        """Uncalibrated: the model's own sigmoid, computed in float64 as the kiosk does."""
        return sigmoid(self.logits)


def score_model(model: TfliteModel, images: np.ndarray, head: Head) -> Scores:
    """Run every uint8 image (n, s, s, c) through the model; the head in float64, like on the kiosk."""
    embeddings = np.asarray([model.run(image)[OUTPUT_EMBEDDING][0] for image in images], dtype=np.float64)
    return Scores(head.logits(embeddings), embeddings)


def score_bytes(model_bytes: bytes, images: np.ndarray, head: Head, num_threads: int = 2) -> Scores:
    """Score images with TFLite model bytes that are not yet written into a bundle."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model_bytes)
        return score_model(TfliteModel(path, num_threads=num_threads), images, head)


def threshold_and_metrics(
    labels: np.ndarray, probabilities: np.ndarray, min_recall: float, seed: int
) -> tuple[float, dict[str, Any]]:
    """The run's rule (highest threshold keeping recall >= min_recall) and every metric at it."""
    threshold = choose_threshold(labels, probabilities, min_recall)
    return threshold, binary_metrics(labels, probabilities, threshold, seed=seed)


def ood_section(fit: np.ndarray, holdout: np.ndarray) -> dict[str, Any]:
    """Mean/std from `fit` embeddings; threshold at OOD_PERCENTILE of rms_z on disjoint `holdout` ones.

    Both come from training images. The threshold must come from images the mean and std did not see:
    an in-sample percentile refused about 8% of other training X-rays instead of 0.5%.
    """
    for name, rows in (("fit", fit), ("holdout", holdout)):
        if len(rows) < 20:
            raise ValueError(f"the ood statistics need at least 20 {name} training images, got {len(rows)}")
    mean = fit.mean(axis=0)
    std = fit.std(axis=0)
    floor = STD_FLOOR_FRACTION * max(float(np.median(std)), 1e-6)
    std = np.maximum(std, floor)
    values = rms_z(holdout, mean, std)
    threshold = float(np.percentile(values, OOD_PERCENTILE))
    return {
        "statistic": "rms_z",
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "threshold": threshold,
        "percentile": OOD_PERCENTILE,
        "std_floor": floor,
        "fit_images": len(fit),
        "threshold_images": len(holdout),
        "false_reject_rate": float(np.mean(values > threshold)),
        "false_reject_rate_on": "held-out training images (threshold set)",
    }


def false_reject_rate(section: dict[str, Any], embeddings: np.ndarray) -> float:
    """Share of these embeddings the ood gate would refuse (e.g. on validation X-rays)."""
    values = rms_z(embeddings, np.asarray(section["mean"]), np.asarray(section["std"]))
    return float(np.mean(values > section["threshold"]))
