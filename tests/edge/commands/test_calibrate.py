"""`python -m edge calibrate`: a clinic's confirmed films set the threshold, or are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.__main__ import main
from edge.bundle import load_bundle
from edge.calibration import Head
from edge.commands.calibrate import _fit
from edge.head_refit import STRENGTHS, SiteFilms
from edge.screener import Screener
from lab.synthetic import xray_bytes


def _films(root: Path, normal: int, pneumonia: int) -> Path:
    """Synthetic confirmed films; PNEUMONIA ones carry a bright opacity, so the tiny model can rank them."""
    for label, count in (("NORMAL", normal), ("PNEUMONIA", pneumonia)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            lesion = (0.3 + 0.4 * (i % 3) / 2, 0.5) if label == "PNEUMONIA" else None
            data = xray_bytes(
                seed=5000 + i + 1000 * (label == "PNEUMONIA"), width=300, height=340, lesion=lesion
            )
            (root / label / f"{label.lower()}-{i}.jpeg").write_bytes(data)
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _films(tmp_path_factory.mktemp("site") / "clinic-a", normal=55, pneumonia=60)


def test_calibrated_bundle_records_the_rule_the_films_and_the_evidence(
    tiny_bundle_int8, site, tmp_path, capsys
):
    out = tmp_path / "calibrated"
    assert main(["calibrate", str(site), "--model", str(tiny_bundle_int8.root), "--out", str(out)]) == 0
    bundle = load_bundle(out)
    section = bundle.metadata["calibration"]
    assert section["site"] == "clinic-a"
    assert section["films"]["total"] == 115
    assert bundle.threshold == section["threshold"]
    assert section["recall_lower_bound_95"] >= 0.95
    assert "one-sided 95% lower bound >= 0.95" in section["rule"]
    refit = section["head_refit"]
    assert set(refit["cross_validated_auc_by_strength"]) == {str(s) for s in STRENGTHS}
    # the site's head is shipped when it ranked the films better out of fold, else the trained one
    assert (bundle.metadata["head"] != tiny_bundle_int8.metadata["head"]) == refit["refit"]
    assert section["method"] == ("head-refit+platt" if refit["refit"] else "platt")  # what was done
    cross_validated = section["metrics_cross_validated"]["recall"]["value"]
    assert cross_validated == section["expected_recall"]
    assert bundle.model_sha256 == tiny_bundle_int8.model_sha256  # the same model file
    band = section["refer_band"]  # set on the same out-of-fold probabilities, or None with the reason
    assert band is None or band["upper"] >= bundle.threshold
    assert bundle.calibration.refer_band_upper == (None if band is None else band["upper"])
    err = capsys.readouterr().err
    assert "threshold" in err and ("refer band" in err or "uncertain-refer band" in err)
    # the kiosk states which calibration is in force with every result
    result = Screener(bundle).assess((site / "NORMAL" / "normal-0.jpeg").read_bytes())
    assert "site calibration 'clinic-a'" in result.calibration
    assert "expected recall on new films" in result.calibration
    assert result.calibration in result.detail
    assert np.isfinite(result.logit)


def test_a_refit_is_kept_only_when_it_ranks_held_out_films_better():
    rng = np.random.default_rng(0)
    trained = rng.normal(0.0, 1.0, 30)
    embeddings = rng.normal(0.0, 1.0, (240, 30))
    patients = tuple(f"p{i}" for i in range(240))
    prior = Head(trained, 0.0)
    for direction, refit in ((trained, False), (trained + rng.normal(0.0, 2.0, 30), True)):
        labels = rng.random(240) < 1.0 / (1.0 + np.exp(-embeddings @ direction / 2.0))
        fitted = _fit(SiteFilms(embeddings, labels, patients), prior, refit=True)
        assert fitted.record["refit"] is refit
        assert (fitted.head is prior) is not refit


def test_keep_head_sets_only_platt_and_the_threshold(tiny_bundle_int8, site, tmp_path):
    out = tmp_path / "platt-only"
    args = ["calibrate", str(site), "--model", str(tiny_bundle_int8.root), "--out", str(out), "--keep-head"]
    assert main(args) == 0
    bundle = load_bundle(out)
    assert bundle.metadata["calibration"]["method"] == "platt"
    assert bundle.metadata["head"] == tiny_bundle_int8.metadata["head"]


def test_a_promise_the_films_cannot_support_is_refused(tiny_bundle_int8, site, tmp_path, capsys):
    out = tmp_path / "calibrated"
    args = ["calibrate", str(site), "--model", str(tiny_bundle_int8.root), "--out", str(out)]
    assert main([*args, "--recall-floor", "0.99"]) == 1
    assert "cannot support the promise recall >= 0.99" in capsys.readouterr().err
    assert not out.exists()


def test_too_few_films_are_refused_and_nothing_is_written(tiny_bundle_int8, tmp_path, capsys):
    small = _films(tmp_path / "tiny-clinic", normal=8, pneumonia=9)
    out = tmp_path / "calibrated"
    assert main(["calibrate", str(small), "--model", str(tiny_bundle_int8.root), "--out", str(out)]) == 1
    assert "9 confirmed PNEUMONIA films (at least 50 are needed)" in capsys.readouterr().err
    assert not out.exists()


def test_calibration_never_overwrites_its_source(tiny_bundle_int8, site, capsys):
    before = json.loads((tiny_bundle_int8.root / "bundle.json").read_text())
    root = str(tiny_bundle_int8.root)
    assert main(["calibrate", str(site), "--model", root, "--out", root]) == 2
    assert json.loads((tiny_bundle_int8.root / "bundle.json").read_text()) == before
