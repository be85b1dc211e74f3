"""The out-of-distribution statistics and the per-variant threshold rule."""

from __future__ import annotations

import numpy as np
import pytest

from edge.quality import OodStats, rms_z
from quantize.calibrate import (
    OOD_PERCENTILE,
    false_reject_rate,
    ood_section,
    threshold_and_metrics,
)


def test_ood_threshold_refuses_half_a_percent_of_unseen_embeddings():
    rng = np.random.default_rng(0)
    fit, holdout, unseen = (rng.normal(1.0, 0.3, size=(2000, 32)) for _ in range(3))
    section = ood_section(fit, holdout)
    assert section["percentile"] == OOD_PERCENTILE
    assert section["false_reject_rate"] == pytest.approx(0.005, abs=0.001)
    assert false_reject_rate(section, unseen) == pytest.approx(0.005, abs=0.004)
    assert (section["fit_images"], section["threshold_images"]) == (2000, 2000)


def test_the_threshold_comes_from_images_the_statistics_did_not_see():
    rng = np.random.default_rng(3)
    fit, holdout = rng.normal(0, 1, size=(500, 16)), rng.normal(0, 1.5, size=(500, 16))
    section = ood_section(fit, holdout)
    mean, std = np.array(section["mean"]), np.array(section["std"])
    assert section["threshold"] == pytest.approx(np.percentile(rms_z(holdout, mean, std), OOD_PERCENTILE))
    assert section["threshold"] > np.percentile(rms_z(fit, mean, std), OOD_PERCENTILE)


def test_ood_section_is_read_and_scored_by_the_edge_identically():
    rng = np.random.default_rng(1)
    section = ood_section(rng.normal(0.5, 0.2, size=(200, 16)), rng.normal(0.5, 0.2, size=(200, 16)))
    stats = OodStats.from_metadata(section)
    probe = rng.normal(0.5, 0.6, size=16)
    mean, std = np.array(section["mean"]), np.array(section["std"])
    assert stats.score(probe) == pytest.approx(float(rms_z(probe[np.newaxis], mean, std)[0]))


def test_a_channel_that_never_fires_gets_a_floor_not_a_zero_std():
    embeddings = np.random.default_rng(2).normal(1.0, 0.3, size=(100, 8))
    embeddings[:, 3] = 0.0
    section = ood_section(embeddings, embeddings)
    assert min(section["std"]) > 0
    assert section["std"][3] == pytest.approx(section["std_floor"])


def test_too_few_images_for_ood_statistics_is_an_error():
    with pytest.raises(ValueError, match="at least 20 holdout training images, got 5"):
        ood_section(np.ones((30, 4)), np.ones((5, 4)))


def test_threshold_keeps_the_runs_minimum_recall():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.3, 0.5, 0.55, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99])
    threshold, metrics = threshold_and_metrics(labels, scores, min_recall=0.9, seed=0)
    assert threshold == 0.5  # the highest threshold that still finds 9 of 10 positives
    assert metrics["recall"]["value"] == pytest.approx(0.9)
    assert metrics["threshold"] == threshold
