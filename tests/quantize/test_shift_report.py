"""The benchmark's shift tables: agreement with the reference on every shift set, and the report."""

from __future__ import annotations

import json

import numpy as np

from edge.metrics import binary_metrics
from edge.preprocess import XrayImage
from lab.shift import fullres_agreement, robustness, worst_of
from lab.synthetic import synthetic_xray
from quantize.benchmark import _add_agreement
from quantize.report import _shift_markdown, _without_per_image

FILMS = [XrayImage(synthetic_xray(seed=s, width=224, height=224), "JPEG", 0.0) for s in range(6)]
LABELS = np.array([0, 1, 0, 1, 0, 1], dtype=bool)


def _entry(name: str, variant: str, offset: float) -> dict:
    def score(films):
        return np.array([film.pixels.mean() / 255.0 + offset for film in films])

    suite = robustness(score, FILMS, LABELS, 0.3)
    site = score(FILMS)
    return {
        "name": name,
        "variant": variant,
        "threshold": 0.3,
        "calibration": "test calibration",
        "probabilities": site.tolist(),
        "shift": {
            "site": {
                "description": "site",
                "films": 6,
                "refused": 0,
                "probabilities": site.tolist(),
                "metrics": binary_metrics(LABELS, site, 0.3),
            },
            "robustness": {"description": "suite", "changes": suite, "worst": worst_of(suite)},
            "fullres": {"description": "fullres", **fullres_agreement(score, FILMS, FILMS, 0.3)},
        },
    }


def test_agreement_covers_site_every_change_and_fullres():
    models = [_entry("reference", "float32", 0.0), _entry("quantised", "int8", 0.5)]
    _add_agreement(models)
    shift = models[1]["agreement"]["shift"]
    assert {"site", "fullres", "robustness: unchanged", "robustness: jpeg quality 30"} <= set(shift)
    assert shift["site"]["same_label"] < 1.0  # the offset moves labels across the threshold
    assert shift["site_delta_auc"] == 0.0  # a constant offset keeps the ranking


def test_report_tables_and_json_without_per_film_lists():
    models = [_entry("reference", "float32", 0.0), _entry("quantised", "int8", 0.01)]
    _add_agreement(models)
    text = "\n".join(_shift_markdown(models))
    assert "## New cohort: site films (shift)" in text and "## Robustness suite (shift)" in text
    assert "| quantised | fullres |" in text
    lean = json.dumps(_without_per_image(models[1]))
    assert "probabilities" not in lean
