"""The float head, Platt calibration, the site threshold rule and its refusals."""

from __future__ import annotations

import numpy as np
import pytest

from edge.calibration import (
    MIN_FILMS_PER_CLASS,
    Calibration,
    CalibrationError,
    Head,
    check_sample,
    fit_platt,
    site_threshold,
)


def test_head_is_a_dot_product_plus_bias_in_float64():
    head = Head(np.array([1.0, -2.0, 0.5]), 0.25)
    assert head.logits(np.array([[1.0, 1.0, 2.0], [0.0, 0.0, 0.0]])) == pytest.approx([0.25, 0.25])
    assert Head.from_metadata(head.to_metadata()).kernel == pytest.approx(head.kernel)


def test_platt_recovers_a_known_slope_and_intercept():
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 3.0, 20_000)
    labels = rng.random(logits.size) < 1.0 / (1.0 + np.exp(-(0.5 * logits - 1.0)))
    slope, intercept = fit_platt(logits, labels)
    assert slope == pytest.approx(0.5, abs=0.03)
    assert intercept == pytest.approx(-1.0, abs=0.06)


def test_platt_stays_finite_on_a_perfectly_separated_sample():
    slope, intercept = fit_platt(np.array([-3.0, -2.0, 2.0, 3.0]), np.array([0, 0, 1, 1]))
    assert np.isfinite([slope, intercept]).all()
    assert slope > 0


def test_calibration_maps_logits_monotonically():
    p = Calibration(0.5, -1.0, "test").probabilities(np.array([-4.0, 0.0, 4.0]))
    assert np.all(np.diff(p) > 0)
    assert p[1] == pytest.approx(1.0 / (1.0 + np.e))


def test_threshold_keeps_the_recall_asked_for():
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(200, bool), np.zeros(100, bool)]
    scores = np.r_[rng.uniform(0.3, 1.0, 200), rng.uniform(0.0, 0.6, 100)]
    chosen = site_threshold(scores, labels, 0.98)
    assert np.mean(scores[labels] >= chosen["threshold"]) >= 0.98
    # the highest such threshold: one step higher loses recall
    higher = np.sort(scores[labels])[np.sort(scores[labels]) > chosen["threshold"]][0]
    assert np.mean(scores[labels] >= higher) < 0.98
    low, high = chosen["recall_ci95"]
    assert low < chosen["recall"] <= high


@pytest.mark.parametrize(
    ("positives", "negatives", "message"),
    [
        (MIN_FILMS_PER_CLASS - 1, 300, "49 confirmed PNEUMONIA films"),
        (300, 10, "10 confirmed NORMAL films"),
        (600, 60, "the smaller class must be at least 20%"),
    ],
)
def test_a_small_or_one_sided_sample_is_refused(positives, negatives, message):
    with pytest.raises(CalibrationError, match=message):
        check_sample(np.r_[np.ones(positives, bool), np.zeros(negatives, bool)])


def test_a_balanced_sample_is_accepted():
    check_sample(np.r_[np.ones(60, bool), np.zeros(50, bool)])
