"""The float head, Platt calibration, the promised-recall threshold rule and its refusals."""

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
    in_refer_band,
    promised_threshold,
    refer_band,
    wilson_lower,
)
from edge.metrics import choose_threshold


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


def test_threshold_is_the_highest_whose_lower_bound_reaches_the_floor():
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(200, bool), np.zeros(100, bool)]
    scores = np.r_[rng.uniform(0.3, 1.0, 200), rng.uniform(0.0, 0.6, 100)]
    chosen = promised_threshold(scores, labels, 0.95)
    caught = int(np.sum(scores[labels] >= chosen["threshold"]))
    assert wilson_lower(caught, 200) >= 0.95
    assert wilson_lower(caught - 1, 200) < 0.95  # one step higher breaks the promise
    assert chosen["expected_recall"] == caught / 200
    low, high = chosen["expected_recall_ci95"]
    assert low < chosen["recall_lower_bound_95"] < chosen["expected_recall"] <= high


def test_threshold_sits_midway_between_the_film_that_sets_it_and_the_next_lower_score():
    """No film sits on the threshold, so a small change of kernels cannot flip the film that set it."""
    rng = np.random.default_rng(3)
    labels = np.r_[np.ones(200, bool), np.zeros(100, bool)]
    scores = np.r_[rng.uniform(0.3, 1.0, 200), rng.uniform(0.0, 0.6, 100)]
    chosen = promised_threshold(scores, labels, 0.95)
    setting, threshold = chosen["set_by_score"], chosen["threshold"]
    next_lower = scores[scores < setting].max()
    assert next_lower < threshold < setting
    three = np.array([threshold, setting, next_lower])
    logits = np.log(three / (1 - three))
    assert logits[0] == pytest.approx((logits[1] + logits[2]) / 2)
    assert np.sum(scores >= threshold) == np.sum(scores >= setting)  # the same films pass


def test_a_threshold_below_every_film_stays_on_the_lowest_score():
    labels = np.r_[np.ones(60, bool), np.zeros(60, bool)]
    scores = np.r_[np.full(60, 0.1), np.full(60, 0.9)]
    assert promised_threshold(scores, labels, 0.95)["threshold"] == 0.1


def test_the_promise_holds_on_new_films_in_at_least_95_percent_of_samples():
    """The guarantee itself: choose on 196 films, measure on a large fresh draw, many times."""
    rng = np.random.default_rng(7)
    floor, held, held_in_sample_rule = 0.95, 0, 0
    trials = 400
    for _ in range(trials):
        labels = np.r_[np.ones(196, bool), np.zeros(117, bool)]
        scores = np.r_[rng.normal(2.0, 1.0, 196), rng.normal(-1.0, 1.0, 117)]
        fresh = rng.normal(2.0, 1.0, 20_000)
        held += np.mean(fresh >= promised_threshold(scores, labels, floor)["threshold"]) >= floor
        held_in_sample_rule += np.mean(fresh >= choose_threshold(labels, scores, floor)) >= floor
    assert held / trials >= 0.93  # 95% nominal, up to the Monte Carlo error of 400 trials
    # the rule it replaces (recall >= floor on the same films) keeps its promise far less often
    assert held_in_sample_rule / trials < 0.8


def test_a_sample_too_small_for_the_promise_is_refused():
    labels = np.r_[np.ones(51, bool), np.zeros(60, bool)]
    scores = np.r_[np.ones(51), np.zeros(60)]
    with pytest.raises(CalibrationError, match=r"51 confirmed PNEUMONIA films cannot support .* at least 52"):
        promised_threshold(scores, labels, 0.95)
    assert promised_threshold(np.r_[scores, 1.0], np.r_[labels, True], 0.95)["expected_recall"] == 1.0


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


def _band_sample(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores where NORMAL films crowd the low end of the referrals and PNEUMONIA dominates the top."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(200, bool), np.zeros(120, bool)]
    scores = np.r_[rng.beta(5, 1.5, 200), rng.beta(1.5, 5, 120)]
    return scores, labels


def test_refer_band_upper_edge_is_the_lowest_with_the_precision_promise():
    scores, labels = _band_sample()
    threshold = 0.2
    band = refer_band(scores, labels, threshold, precision_floor=0.95)
    assert band is not None and band["upper"] > threshold
    above = scores >= band["upper"]
    assert wilson_lower(int((above & labels).sum()), int(above.sum())) >= 0.95
    lower_edge = scores[scores < band["upper"]].max()  # the next film down joins the confident calls
    wider = scores >= lower_edge
    assert lower_edge < threshold or wilson_lower(int((wider & labels).sum()), int(wider.sum())) < 0.95
    in_band = (scores >= threshold) & (scores < band["upper"])
    assert band["films_in_band"] == int(in_band.sum()) > 0
    assert band["pneumonia_share_in_band"] == pytest.approx((in_band & labels).sum() / in_band.sum())


def test_no_band_when_no_score_range_reaches_the_precision_floor():
    scores, labels = _band_sample()
    assert refer_band(scores, ~labels, 0.2, precision_floor=0.95) is None  # classes swapped: hopeless


def test_a_band_cannot_reach_below_the_threshold():
    labels = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    scores = np.r_[np.linspace(0.6, 1.0, 100), np.linspace(0.0, 0.4, 100)]  # perfectly separated
    band = refer_band(scores, labels, 0.5, precision_floor=0.95)
    assert band is not None and band["upper"] == 0.5 and band["films_in_band"] == 0


def test_only_a_pneumonia_call_below_the_upper_edge_is_uncertain():
    assert in_refer_band("PNEUMONIA", 0.5, 0.8)
    assert not in_refer_band("PNEUMONIA", 0.8, 0.8)
    assert not in_refer_band("NORMAL", 0.1, 0.8)
    assert not in_refer_band("PNEUMONIA", 0.5, None)
    assert not in_refer_band(None, None, 0.8)


def test_calibration_reads_the_band_from_the_bundle_section():
    section = {"slope": 1.0, "intercept": 0.0, "description": "d"}
    assert Calibration.from_metadata(section).refer_band_upper is None
    assert Calibration.from_metadata({**section, "refer_band": None}).refer_band_upper is None
    assert Calibration.from_metadata({**section, "refer_band": {"upper": 0.83}}).refer_band_upper == 0.83
