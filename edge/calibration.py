"""From the model's embedding to the probability a nurse sees, and the site calibration that sets it.

The model's last layer (one sigmoid unit on the pooled features) is evaluated here in float64 from
the bundle's `head` section, not inside the TFLite graph. In a full-integer model the in-graph
sigmoid output has 256 levels that saturate near 1, which threw away the ranking on a new cohort;
the pooled embedding keeps it, and 1,280 multiply-adds cost nothing.

A bundle's `calibration` section maps the head's logit to a probability (Platt scaling,
p = sigmoid(slope * logit + intercept)) and records the operating threshold and the films it was
set on. `python -m edge calibrate` sets both on a clinic's own confirmed films (edge/commands/calibrate.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.metrics import choose_threshold, wilson_interval

#: Fewest films of each class a site sample needs before anything is set on it: with 50 pneumonia
#: films one miss moves recall by 2 points, the step size of the recall rule itself.
MIN_FILMS_PER_CLASS = 50
#: The smaller class must be at least this share of the sample, or one class would decide the fit.
MIN_CLASS_SHARE = 0.2


class CalibrationError(ValueError):
    """A sample that cannot set a threshold or a calibration; the message says what is missing."""


@dataclass(frozen=True)
class Head:
    """The classifier's one sigmoid unit: logit = embedding . kernel + bias."""

    kernel: np.ndarray
    bias: float

    @classmethod
    def from_metadata(cls, head: dict[str, Any]) -> Head:
        kernel = np.asarray(head["kernel"], dtype=np.float64).reshape(-1)
        return cls(kernel, float(head["bias"]))

    def to_metadata(self) -> dict[str, Any]:
        return {
            "input": "embedding",
            "activation": "sigmoid",
            "kernel": [float(v) for v in self.kernel],
            "bias": self.bias,
        }

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """One logit per row of embeddings (n, d), in float64."""
        rows = np.asarray(embeddings, dtype=np.float64).reshape(-1, self.kernel.size)
        return rows @ self.kernel + self.bias


@dataclass(frozen=True)
class Calibration:
    """Logit -> probability (Platt), and which films set it and the threshold."""

    slope: float = 1.0
    intercept: float = 0.0
    description: str = "uncalibrated: the model's own sigmoid"

    @classmethod
    def from_metadata(cls, section: dict[str, Any] | None) -> Calibration:
        if not section:
            return cls()
        return cls(float(section["slope"]), float(section["intercept"]), str(section["description"]))

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid(self.slope * np.asarray(logits, dtype=np.float64) + self.intercept)


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(values, -60.0, 60.0)))


def check_sample(labels: np.ndarray) -> None:
    """Refuse a sample too small or too one-sided to set anything on, saying what it lacks."""
    labels = np.asarray(labels).astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    problems = []
    for name, count in (("PNEUMONIA", positives), ("NORMAL", negatives)):
        if count < MIN_FILMS_PER_CLASS:
            problems.append(f"{count} confirmed {name} films (at least {MIN_FILMS_PER_CLASS} are needed)")
    if not problems and min(positives, negatives) < MIN_CLASS_SHARE * labels.size:
        problems.append(
            f"{positives} PNEUMONIA and {negatives} NORMAL films: the smaller class must be at least "
            f"{MIN_CLASS_SHARE:.0%} of the sample"
        )
    if problems:
        raise CalibrationError("the sample cannot set a threshold: " + "; ".join(problems))


def fit_platt(logits: np.ndarray, labels: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """Slope and intercept of a one-feature logistic regression: Newton's method with step halving.

    A tiny ridge (1e-3) keeps the fit finite when the sample is perfectly separated.
    """
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    design = np.stack([x, np.ones_like(x)], axis=1)
    ridge = 1e-3

    def loss(w: np.ndarray) -> float:
        z = design @ w
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * ridge * w @ w)

    weights = np.array([1.0, 0.0])
    for _ in range(iterations):
        p = sigmoid(design @ weights)
        gradient = design.T @ (p - y) + ridge * weights
        hessian = (design * (p * (1 - p))[:, None]).T @ design + ridge * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        scale, current = 1.0, loss(weights)
        while scale > 1e-6 and loss(weights - scale * step) > current:
            scale /= 2
        weights = weights - scale * step
        if np.max(np.abs(scale * step)) < 1e-10:
            break
    return float(weights[0]), float(weights[1])


def site_threshold(probabilities: np.ndarray, labels: np.ndarray, min_recall: float) -> dict[str, Any]:
    """The highest threshold keeping recall >= min_recall on the site films, with its evidence."""
    labels = np.asarray(labels).astype(bool)
    threshold = choose_threshold(labels, probabilities, min_recall)
    flagged = np.asarray(probabilities) >= threshold
    caught = int((flagged & labels).sum())
    cleared = int((~flagged & ~labels).sum())
    return {
        "threshold": threshold,
        "rule": f"highest threshold keeping recall >= {min_recall} on the site's confirmed films",
        "recall": caught / int(labels.sum()),
        "recall_ci95": list(wilson_interval(caught, int(labels.sum()))),
        "specificity": cleared / int((~labels).sum()),
        "specificity_ci95": list(wilson_interval(cleared, int((~labels).sum()))),
    }


def brier(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((np.asarray(probabilities) - np.asarray(labels, dtype=np.float64)) ** 2))


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1 - 1e-12)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
