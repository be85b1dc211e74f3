"""`python -m edge calibrate`: a clinic's confirmed films set the threshold, or are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.__main__ import main
from edge.bundle import load_bundle
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
    assert section["method"] == "platt" and section["site"] == "clinic-a"
    assert section["films"]["total"] == 115
    assert bundle.threshold == section["threshold"]
    assert section["recall"] >= 0.98
    assert "recall >= 0.98" in section["rule"]
    assert bundle.model_sha256 == tiny_bundle_int8.model_sha256  # the same model file
    assert "threshold" in capsys.readouterr().err
    # the kiosk states which calibration is in force with every result
    result = Screener(bundle).assess((site / "NORMAL" / "normal-0.jpeg").read_bytes())
    assert "site calibration 'clinic-a'" in result.calibration
    assert result.calibration in result.detail
    assert np.isfinite(result.logit)


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
