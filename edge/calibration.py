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

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.kermany import LABELS
from edge.metrics import wilson_interval

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
    #: Upper edge of the "uncertain: refer" band (`refer_band`); None: the bundle has no band.
    refer_band_upper: float | None = None

    @classmethod
    def from_metadata(cls, section: dict[str, Any] | None) -> Calibration:
        if not section:
            return cls()
        band = section.get("refer_band") or {}
        upper = float(band["upper"]) if "upper" in band else None
        return cls(float(section["slope"]), float(section["intercept"]), str(section["description"]), upper)

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


#: z of a one-sided 95% bound: the promise "recall >= floor on new films" holds with 95% confidence.
Z_ONE_SIDED_95 = 1.6448536269514722


def wilson_lower(successes: int, total: int, z: float = Z_ONE_SIDED_95) -> float:
    """Lower end of the Wilson score interval at `z`."""
    if total == 0:
        return 0.0
    p = successes / total
    centre = p + z**2 / (2 * total)
    half = z * math.sqrt(p * (1 - p) / total + z**2 / (4 * total**2))
    return max(0.0, (centre - half) / (1 + z**2 / total))


def promised_threshold(probabilities: np.ndarray, labels: np.ndarray, floor: float) -> dict[str, Any]:
    """The highest threshold whose recall has a one-sided 95% lower bound >= floor, set with a margin.

    `probabilities` must be out of fold (no film scored by a head fitted on it): then recall on them
    estimates recall on the next films, and the bound makes the promise hold on new films, not only
    on the sample. "Highest threshold keeping recall >= 0.98 on the films" took the 4th-lowest of 194
    in-sample scores and promised 0.985; the next films got 0.954. Refuses a sample that cannot
    support the promise even when every PNEUMONIA film is caught. The threshold lies midway between
    the lowest PNEUMONIA score it keeps and the next lower score (`with_margin`).
    """
    labels = np.asarray(labels).astype(bool)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if not 0.0 < floor < 1.0:
        raise ValueError(f"the recall floor must be in (0, 1), got {floor}")
    positives = np.sort(probabilities[labels])[::-1]
    total = len(positives)
    needed = next((k for k in range(1, total + 1) if wilson_lower(k, total) >= floor), None)
    if needed is None:
        minimum = math.ceil(floor * Z_ONE_SIDED_95**2 / (1.0 - floor))
        raise CalibrationError(
            f"{total} confirmed PNEUMONIA films cannot support the promise recall >= {floor} on new "
            f"films with 95% confidence, even with none missed: at least {minimum} are needed"
        )
    setting_score = float(positives[needed - 1])
    threshold = with_margin(probabilities, setting_score)
    flagged = probabilities >= threshold
    caught, cleared = int((flagged & labels).sum()), int((~flagged & ~labels).sum())
    return {
        "threshold": threshold,
        "rule": (
            f"highest threshold whose cross-validated recall has a one-sided 95% lower bound >= {floor}, "
            "placed midway (in logit) between the lowest PNEUMONIA score it keeps and the next lower score"
        ),
        "set_by_score": setting_score,
        "recall_floor": floor,
        "expected_recall": caught / total,
        "expected_recall_ci95": list(wilson_interval(caught, total)),
        "recall_lower_bound_95": wilson_lower(caught, total),
        "expected_specificity": cleared / int((~labels).sum()),
        "expected_specificity_ci95": list(wilson_interval(cleared, int((~labels).sum()))),
    }


def refer_band(
    probabilities: np.ndarray, labels: np.ndarray, threshold: float, precision_floor: float
) -> dict[str, Any] | None:
    """The "uncertain: refer" band: referred films (>= threshold) below the lowest score above which
    the films' precision has a one-sided 95% lower bound >= precision_floor.

    The threshold is set for recall, so many referred films are NORMAL; the band tells the clinician
    which referrals the model is unsure of. It changes no decision: a film in the band is referred,
    and every figure counts it so. `probabilities` must be out of fold, as for the threshold. None
    when no score range reaches the floor (then no referral can be called confident).
    """
    labels = np.asarray(labels).astype(bool)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    referred = probabilities >= threshold
    confident_from = next(
        (
            float(score)
            for score in np.unique(probabilities[referred])
            if wilson_lower(
                int((labels & (probabilities >= score)).sum()), int((probabilities >= score).sum())
            )
            >= precision_floor
        ),
        None,
    )
    if confident_from is None:
        return None
    upper = max(threshold, with_margin(probabilities, confident_from))
    band, above = referred & (probabilities < upper), probabilities >= upper
    in_band, pneumonia_in_band = int(band.sum()), int((band & labels).sum())
    return {
        "upper": upper,
        "rule": (
            "referred films below the lowest score above which the cross-validated precision has a "
            f"one-sided 95% lower bound >= {precision_floor} (placed midway in logit below that score)"
        ),
        "precision_floor": precision_floor,
        "films_in_band": in_band,
        "share_of_referrals_in_band": in_band / max(1, int(referred.sum())),
        "pneumonia_share_in_band": pneumonia_in_band / in_band if in_band else None,
        "pneumonia_share_in_band_ci95": list(wilson_interval(pneumonia_in_band, in_band))
        if in_band
        else None,
        "precision_above": int((above & labels).sum()) / max(1, int(above.sum())),
        "precision_above_ci95": list(wilson_interval(int((above & labels).sum()), int(above.sum()))),
    }


def in_refer_band(label: str | None, probability: float | None, upper: float | None) -> bool:
    """A PNEUMONIA call below the band's upper edge (a referral either way)."""
    return label == LABELS[1] and probability is not None and upper is not None and probability < upper


def with_margin(probabilities: np.ndarray, setting_score: float) -> float:
    """Midway, in logit, between `setting_score` and the next lower score: the same films pass either way.

    A threshold equal to a film's own score leaves that film no margin: on another machine's kernels
    (int8 on aarch64 moved one site film from 0.2111 to 0.1823) exactly that film flips to a miss.
    """
    below = probabilities[probabilities < setting_score]
    if below.size == 0:
        return setting_score
    return float(sigmoid(np.array((_logit(setting_score) + _logit(float(below.max()))) / 2.0)))


def _logit(probability: float) -> float:
    clipped = min(max(probability, 1e-12), 1.0 - 1e-12)
    return math.log(clipped / (1.0 - clipped))


def brier(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((np.asarray(probabilities) - np.asarray(labels, dtype=np.float64)) ** 2))


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1 - 1e-12)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
