"""Screening metrics against values worked out by hand or published (Newcombe 1998 for Wilson)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.metrics import (
    binary_metrics,
    choose_threshold,
    confusion,
    f1_score,
    roc_auc,
    roc_curve,
    wilson_interval,
)

# 10 cases: 4 PNEUMONIA (1), 6 NORMAL (0). At threshold 0.5: tp 3, fn 1, fp 2, tn 4.
Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
S = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.55, 0.4, 0.2, 0.1, 0.05])


def test_confusion_counts():
    assert confusion(Y, S >= 0.5) == {"tp": 3, "fp": 2, "tn": 4, "fn": 1}


def test_precision_recall_f1_specificity_by_hand():
    m = binary_metrics(Y, S, 0.5, n_boot=50)
    assert m["precision"]["value"] == pytest.approx(3 / 5)
    assert m["recall"]["value"] == pytest.approx(3 / 4)
    assert m["specificity"]["value"] == pytest.approx(4 / 6)
    assert m["accuracy"]["value"] == pytest.approx(7 / 10)
    assert m["f1"]["value"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))  # = 2PR/(P+R) = 2/3
    assert (m["n"], m["n_positive"], m["threshold"]) == (10, 4, 0.5)


def test_f1_without_any_positive_call_or_case_is_nan():
    assert math.isnan(f1_score({"tp": 0, "fp": 0, "tn": 5, "fn": 0}))


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [  # Newcombe (1998), Statistics in Medicine 17:857, table I, method 3 (Wilson score)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (29, 29, 0.8830, 1.0),
    ],
)
def test_wilson_interval_matches_published_values(k, n, low, high):
    assert wilson_interval(k, n) == pytest.approx((low, high), abs=5e-5)


def test_wilson_interval_of_nothing_is_nan():
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_auc_counts_pairs():
    # positives 0.9, 0.8, 0.6, 0.3 above the negatives (0.7 ... 0.05): 6 + 6 + 5 + 3 = 20 of 24 pairs.
    assert roc_auc(Y, S) == pytest.approx(20 / 24)


def test_auc_counts_ties_as_half():
    # pairs (pos, neg): (0.5, 0.5) tie = 0.5, (0.5, 0.2) = 1, (0.9, 0.5) = 1, (0.9, 0.2) = 1 -> 3.5 / 4
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9])) == pytest.approx(0.875)
    assert roc_auc(np.array([0, 1, 0, 1]), np.full(4, 0.3)) == pytest.approx(0.5)


def test_auc_extremes_and_one_class():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.3, 0.4])) == 0.0
    assert math.isnan(roc_auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_auc_agrees_with_the_area_under_roc_curve():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) + 0.4 * y, 1)  # rounded: many ties
    fpr, tpr, thresholds = roc_curve(y, s)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.all(np.diff(thresholds) < 0)
    trapezoids = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)
    assert roc_auc(y, s) == pytest.approx(trapezoids)


def test_choose_threshold_keeps_the_required_recall():
    # positives sorted high to low: 0.9, 0.8, 0.6, 0.3
    assert choose_threshold(Y, S, 1.0) == 0.3  # every positive: the lowest positive score
    assert choose_threshold(Y, S, 0.75) == 0.6  # 3 of 4
    assert choose_threshold(Y, S, 0.5) == 0.8  # 2 of 4
    assert choose_threshold(Y, S, 0.51) == 0.6  # 2 of 4 is not enough: needs 3
    assert choose_threshold(Y, S, 0.01) == 0.9  # one positive suffices


def test_choose_threshold_is_the_highest_that_keeps_recall():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = rng.random(500) + 0.5 * y
    for min_recall in (0.8, 0.9, 0.97, 1.0):
        t = choose_threshold(y, s, min_recall)
        assert (s[y == 1] >= t).mean() >= min_recall
        assert (s[y == 1] >= np.nextafter(t, 2.0)).mean() < min_recall


def test_choose_threshold_with_tied_positive_scores():
    y = np.array([1, 1, 1, 1, 0])
    s = np.array([0.7, 0.7, 0.7, 0.2, 0.1])
    assert choose_threshold(y, s, 0.5) == 0.7  # the tie brings recall to 3/4, still >= 0.5
    assert choose_threshold(y, s, 0.8) == 0.2


@pytest.mark.parametrize("min_recall", [0.0, -0.1, 1.01])
def test_choose_threshold_rejects_impossible_recall(min_recall):
    with pytest.raises(ValueError, match="min_recall"):
        choose_threshold(Y, S, min_recall)


def test_choose_threshold_needs_a_positive():
    with pytest.raises(ValueError, match="positive"):
        choose_threshold(np.zeros(4), np.arange(4) / 4, 0.9)


def test_intervals_hold_the_value_and_are_reproducible():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = rng.random(200) + 0.6 * y
    first = binary_metrics(y, s, 0.7, n_boot=200, seed=5)
    assert first == binary_metrics(y, s, 0.7, n_boot=200, seed=5)
    for name in ("accuracy", "precision", "recall", "specificity", "f1", "auc"):
        low, high = first[name]["ci95"]
        assert 0.0 <= low <= first[name]["value"] <= high <= 1.0, name
