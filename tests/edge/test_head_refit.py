"""Site adaptation of the head: the MAP fit, its folds by patient, and the choice of the prior's strength."""

from __future__ import annotations

import numpy as np
import pytest

from edge.calibration import Head, sigmoid
from edge.head_refit import SiteFilms, choose_strength, fit_head, out_of_fold_logits, patient_folds
from edge.metrics import roc_auc


def _shifted_site(rng: np.random.Generator, films: int = 240, dims: int = 40) -> tuple[SiteFilms, Head]:
    """A site whose PNEUMONIA direction differs from the trained head's: two films per patient."""
    trained = rng.normal(0.0, 1.0, dims)
    site_direction = trained + rng.normal(0.0, 1.5, dims)
    embeddings = rng.normal(0.0, 1.0, (films, dims))
    labels = rng.random(films) < sigmoid(embeddings @ site_direction / np.sqrt(dims) * 3.0)
    patients = tuple(f"p{i // 2}" for i in range(films))
    return SiteFilms(embeddings, labels, patients), Head(trained / np.sqrt(dims), 0.0)


def _direct_map(films: SiteFilms, prior: Head, strength: float) -> np.ndarray:
    """The same objective solved with the full (d+1) x (d+1) Newton system, for comparison."""
    from edge.head_refit import BIAS_SCALE

    design = np.hstack([films.embeddings, np.full((len(films.labels), 1), BIAS_SCALE)])
    centre = np.r_[prior.kernel, prior.bias / BIAS_SCALE]
    theta = centre.copy()
    for _ in range(50):
        p = sigmoid(design @ theta)
        gradient = design.T @ (p - films.labels) + strength * (theta - centre)
        hessian = (design * (p * (1 - p))[:, None]).T @ design + strength * np.eye(len(theta))
        theta -= np.linalg.solve(hessian, gradient)
    return np.r_[theta[:-1], theta[-1] * BIAS_SCALE]


def test_the_woodbury_newton_fit_equals_the_direct_solution():
    films, prior = _shifted_site(np.random.default_rng(0))
    head = fit_head(films, prior, strength=3.0)
    assert np.r_[head.kernel, head.bias] == pytest.approx(_direct_map(films, prior, 3.0), abs=1e-6)


def test_a_strong_prior_keeps_the_trained_head_and_a_weak_one_follows_the_site():
    films, prior = _shifted_site(np.random.default_rng(1))
    strong = fit_head(films, prior, strength=1e6)
    weak = fit_head(films, prior, strength=0.3)
    assert np.abs(strong.kernel - prior.kernel).max() < 1e-3
    assert np.linalg.norm(weak.kernel - prior.kernel) > 10 * np.linalg.norm(strong.kernel - prior.kernel)
    assert roc_auc(films.labels, weak.logits(films.embeddings)) > roc_auc(
        films.labels, prior.logits(films.embeddings)
    )


def test_folds_keep_each_patients_films_together_and_both_classes_in_each_fold():
    films, _ = _shifted_site(np.random.default_rng(2))
    folds = patient_folds(films.patients, films.labels, 5, seed=0)
    for patient in set(films.patients):
        assert len({int(f) for f, p in zip(folds, films.patients, strict=True) if p == patient}) == 1
    for fold in range(5):
        assert films.labels[folds == fold].any() and (~films.labels[folds == fold]).any()


def test_out_of_fold_logits_never_come_from_a_head_that_saw_the_film():
    films, prior = _shifted_site(np.random.default_rng(3))
    weak = 0.01  # a near-unregularised fit memorises its own films
    in_sample = fit_head(films, prior, weak).logits(films.embeddings)
    held_out = out_of_fold_logits(films, prior, weak)
    assert roc_auc(films.labels, in_sample) > roc_auc(films.labels, held_out)


def test_the_strength_is_chosen_by_cross_validated_auc():
    films, prior = _shifted_site(np.random.default_rng(4))
    choice = choose_strength(films, prior, strengths=(1e4, 10.0, 1.0), repeats=2)
    assert set(choice.auc_by_strength) == {1e4, 10.0, 1.0}
    assert choice.auc_by_strength[choice.strength] == max(choice.auc_by_strength.values())
    # the site's direction differs from the trained one: a looser prior ranks held-out films better
    assert choice.strength < 1e4
    assert choice.auc_by_strength[choice.strength] > choice.prior_auc


def test_mismatched_films_are_refused():
    with pytest.raises(ValueError, match="disagree"):
        SiteFilms(np.zeros((3, 4)), np.array([True, False, True]), ("a", "b"))
    films, prior = _shifted_site(np.random.default_rng(5))
    with pytest.raises(ValueError, match="strength must be > 0"):
        fit_head(films, prior, 0.0)
