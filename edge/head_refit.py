"""Site adaptation of the classifier head: refit it on a clinic's confirmed films, the shipped head as prior.

The backbone's embedding carries the film; the one-unit head decides. A new cohort shifts which
directions of the embedding mean PNEUMONIA (the training split's two NORMAL batches already differ),
so a clinic's own confirmed films can move the head. A few hundred films cannot support 1,281 free
parameters, so the fit is a logistic regression whose Gaussian prior is centred on the trained head:

    minimise  sum(site films' log loss)
              + strength / 2 * (|w - w_trained|^2 + (b - b_trained)^2 / BIAS_SCALE^2)

`strength` says how far the site may pull the head away from what 4,000 training films taught it;
it is chosen by patient-level cross-validation inside the site sample (`choose_strength`), and the
same folds give the out-of-fold logits from which the threshold and its promise are set, so no figure
is measured on a film that shaped it. NumPy only: it runs on the kiosk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.calibration import Head, sigmoid
from edge.metrics import roc_auc

#: The bias enters the prior through a constant feature of this size, so it is held 100x more loosely
#: than each kernel weight: a new cohort's prevalence should move the bias freely.
BIAS_SCALE = 10.0
#: Prior strengths tried, strongest (closest to the trained head) first.
STRENGTHS = (300.0, 100.0, 30.0, 10.0, 3.0, 1.0)
FOLDS = 5
#: Repeats of the fold assignment averaged when choosing the strength (different seeds).
REPEATS = 3


@dataclass(frozen=True)
class SiteFilms:
    """Embeddings of a site's confirmed films, with labels (1 PNEUMONIA) and patient ids for the folds."""

    embeddings: np.ndarray  # (n, d) float64
    labels: np.ndarray  # (n,) bool
    patients: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != n or len(self.patients) != n:
            raise ValueError(
                f"embeddings {self.embeddings.shape}, {n} labels and {len(self.patients)} patients disagree"
            )

    def subset(self, rows: np.ndarray) -> SiteFilms:
        return SiteFilms(self.embeddings[rows], self.labels[rows], tuple(np.asarray(self.patients)[rows]))


def fit_head(films: SiteFilms, prior: Head, strength: float, iterations: int = 50) -> Head:
    """The MAP head under a Gaussian prior centred on `prior` (Newton's method, Woodbury-solved).

    The Hessian is (d+1) x (d+1) but has rank n + 1; each Newton step solves an n x n system instead,
    so a refit on a few hundred films takes milliseconds.
    """
    if strength <= 0:
        raise ValueError(f"strength must be > 0, got {strength}")
    design = np.hstack([films.embeddings, np.full((len(films.labels), 1), BIAS_SCALE)])
    centre = np.r_[prior.kernel, prior.bias / BIAS_SCALE]
    targets = films.labels.astype(np.float64)
    gram = design @ design.T
    theta = centre.copy()

    def objective(values: np.ndarray) -> float:
        z = design @ values
        return float(np.sum(np.logaddexp(0.0, z) - targets * z) + 0.5 * strength * _sq(values - centre))

    for _ in range(iterations):
        p = sigmoid(design @ theta)
        gradient = design.T @ (p - targets) + strength * (theta - centre)
        step = _newton_step(design, gram, p * (1.0 - p), gradient, strength)
        scale, current = 1.0, objective(theta)
        while scale > 1e-6 and objective(theta - scale * step) > current:
            scale /= 2
        theta = theta - scale * step
        if np.max(np.abs(scale * step)) < 1e-9:
            break
    return Head(theta[:-1].copy(), float(theta[-1] * BIAS_SCALE))


def _sq(values: np.ndarray) -> float:
    return float(values @ values)


def _newton_step(
    design: np.ndarray, gram: np.ndarray, weights: np.ndarray, gradient: np.ndarray, strength: float
) -> np.ndarray:
    """(A^T W A + s I)^-1 g = (g - A^T S (s I + S A A^T S)^-1 S A g) / s, with S = sqrt(W)."""
    root = np.sqrt(weights)
    inner = strength * np.eye(len(weights)) + root[:, None] * gram * root[None, :]
    correction = design.T @ (root * np.linalg.solve(inner, root * (design @ gradient)))
    return (gradient - correction) / strength


def patient_folds(patients: Sequence[str], labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold index per film: patients shuffled (seeded) and dealt round-robin within each class."""
    fold_of: dict[str, int] = {}
    rng = np.random.default_rng(seed)
    for label in (True, False):
        group = sorted({p for p, y in zip(patients, labels, strict=True) if bool(y) == label} - set(fold_of))
        for position, patient in enumerate(rng.permutation(group)):
            fold_of[str(patient)] = position % folds
    return np.array([fold_of[p] for p in patients])


def out_of_fold_logits(
    films: SiteFilms, prior: Head, strength: float, folds: int = FOLDS, seed: int = 0
) -> np.ndarray:
    """Each film's logit from a head refitted without its patient's films."""
    assignment = patient_folds(films.patients, films.labels, folds, seed)
    logits = np.empty(len(films.labels))
    for fold in range(folds):
        held_out = assignment == fold
        head = fit_head(films.subset(~held_out), prior, strength)
        logits[held_out] = head.logits(films.embeddings[held_out])
    return logits


@dataclass(frozen=True)
class StrengthChoice:
    """The chosen prior strength and the cross-validated AUC of every strength tried."""

    strength: float
    auc_by_strength: dict[float, float]
    prior_auc: float  # the trained head's AUC on the same films (nothing fitted: no folds needed)


def _mean_auc(films: SiteFilms, prior: Head, strength: float, repeats: int) -> float:
    """Mean out-of-fold AUC over `repeats` fold draws."""
    draws = [
        roc_auc(films.labels, out_of_fold_logits(films, prior, strength, seed=r)) for r in range(repeats)
    ]
    return float(np.mean(draws))


def choose_strength(
    films: SiteFilms, prior: Head, strengths: Sequence[float] = STRENGTHS, repeats: int = REPEATS
) -> StrengthChoice:
    """The strength with the best mean out-of-fold AUC over `repeats` fold draws; ties go to the stronger."""
    aucs = {float(s): _mean_auc(films, prior, s, repeats) for s in strengths}
    best = max(aucs.values())
    chosen = next(s for s in sorted(aucs, reverse=True) if aucs[s] >= best - 1e-12)
    return StrengthChoice(chosen, aucs, roc_auc(films.labels, prior.logits(films.embeddings)))
