"""The screener end to end on real tiny TFLite bundles."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.bundle import MODEL_FILE, Bundle, BundleError
from edge.preprocess import ImageError, load_xray
from edge.provenance import sha256_file
from edge.quality import BLANK, COLOUR_PHOTO, NOT_A_CHEST_FILM, OUT_OF_DISTRIBUTION, QualityThresholds
from edge.screener import INTENDED_USE, Screener, ScreenerOptions, default_model_dir
from lab.synthetic import encode, synthetic_xray, xray_bytes
from tests.tiny_bundle import PATIENT, dicom_bytes


@pytest.fixture(scope="module")
def screener(tiny_bundle_int8) -> Screener:
    return Screener(tiny_bundle_int8)


def with_threshold(bundle: Bundle, threshold: float) -> Bundle:
    return Bundle(bundle.root, {**bundle.metadata, "threshold": threshold})


def test_xray_is_scored_with_heatmap_and_provenance(screener, tiny_bundle_int8):
    data = xray_bytes(11)
    result = screener.assess(data)
    assert result.status == "ok"
    assert result.label in ("NORMAL", "PNEUMONIA")
    assert 0.0 <= result.probability <= 1.0
    assert result.reason is None
    assert result.quality_flags == ()
    assert result.model_name == "tiny-int8"
    assert result.model_sha256 == sha256_file(tiny_bundle_int8.model_path)
    assert result.runtime == screener.model.runtime_name
    assert result.elapsed_ms > 0
    assert result.input_sha256 == hashlib.sha256(data).hexdigest()
    assert "not a diagnosis" in result.detail
    with Image.open(io.BytesIO(result.heatmap_png)) as layer:
        assert (layer.format, layer.mode) == ("PNG", "P")  # the see-through layer (edge.heatmap)
        assert layer.size == (213, 256)  # 1000 x 1200 at the layer's long side


def test_label_follows_the_bundle_threshold(tiny_bundle_int8):
    data = xray_bytes(12)
    probability = Screener(tiny_bundle_int8).assess(data).probability
    below = Screener(with_threshold(tiny_bundle_int8, probability + 0.01)).assess(data)
    at = Screener(with_threshold(tiny_bundle_int8, probability)).assess(data)
    assert below.label == "NORMAL"
    assert at.label == "PNEUMONIA"
    assert below.threshold == pytest.approx(probability + 0.01)


def with_band(bundle: Bundle, threshold: float, upper: float) -> Bundle:
    calibration = {"slope": 1.0, "intercept": 0.0, "description": "test", "refer_band": {"upper": upper}}
    return Bundle(bundle.root, {**bundle.metadata, "threshold": threshold, "calibration": calibration})


def test_a_referral_below_the_band_edge_is_uncertain_and_still_a_referral(tiny_bundle_int8):
    data = xray_bytes(12)
    p = Screener(tiny_bundle_int8).assess(data).probability
    inside = Screener(with_band(tiny_bundle_int8, p - 0.01, p + 0.01)).assess(data)
    above = Screener(with_band(tiny_bundle_int8, p - 0.02, p - 0.01)).assess(data)
    below = Screener(with_band(tiny_bundle_int8, p + 0.01, p + 0.02)).assess(data)
    assert (inside.label, inside.uncertain, inside.refer_band_upper) == (
        "PNEUMONIA",
        True,
        pytest.approx(p + 0.01),
    )
    assert "Uncertain" in inside.detail and inside.to_dict()["uncertain"] is True
    assert (above.label, above.uncertain) == ("PNEUMONIA", False) and "Uncertain" not in above.detail
    assert (below.label, below.uncertain) == ("NORMAL", False)


def test_same_answer_as_the_float_model(screener, tiny_bundle_float):
    data = xray_bytes(13)
    assert screener.assess(data).probability == pytest.approx(
        Screener(tiny_bundle_float).assess(data).probability, abs=0.02
    )


def test_to_dict_is_json_ready_without_the_png(screener):
    fields = screener.assess(xray_bytes(14)).to_dict()
    assert "heatmap_png" not in fields
    assert fields["intended_use"] == INTENDED_USE
    json.dumps(fields)


def test_undecodable_input_raises_image_error(screener):
    with pytest.raises(ImageError) as caught:
        screener.assess(b"GIF89a not really")
    assert caught.value.reason == "not_an_image"


@pytest.mark.parametrize(
    ("pixels", "flag"),
    [
        (np.dstack([np.full((500, 500), v, dtype=np.uint8) for v in (200, 60, 30)]), COLOUR_PHOTO),
        (np.full((500, 500), 90, dtype=np.uint8), BLANK),
        (np.random.default_rng(2).integers(0, 256, size=(500, 500), dtype=np.uint8), NOT_A_CHEST_FILM),
    ],
)
def test_gate_failures_are_rejected_without_a_label(screener, pixels, flag):
    result = screener.assess(encode(pixels, "PNG"))
    assert result.status == "rejected"
    assert result.reason == flag
    assert flag in result.quality_flags
    assert (result.label, result.probability, result.heatmap_png) == (None, None, None)
    assert result.detail.startswith("cannot assess:")


def test_heatmap_can_be_switched_off(tiny_bundle_int8):
    result = Screener(tiny_bundle_int8, ScreenerOptions(heatmap=False)).assess(xray_bytes(15))
    assert result.status == "ok"
    assert result.heatmap_png is None


def test_heatmap_size_is_an_option(tiny_bundle_int8):
    result = Screener(tiny_bundle_int8, ScreenerOptions(heatmap_long_side=300)).assess(xray_bytes(15))
    with Image.open(io.BytesIO(result.heatmap_png)) as layer:
        assert max(layer.size) == 300


def test_dicom_is_scored_without_patient_data_anywhere(screener, caplog):
    raw = synthetic_xray(16, 400, 480).astype(np.uint16) * 16
    raw[0, 0], raw[0, 1] = 0, 255 * 16  # full range: the 8-bit stretch gives back the gray pixels
    with caplog.at_level(logging.DEBUG):
        result = screener.assess(dicom_bytes(raw))
    assert result.status == "ok"
    text = json.dumps(result.to_dict()) + caplog.text
    assert "Doe" not in text
    assert PATIENT not in text
    assert "424242" not in text


def test_from_path_refuses_a_tampered_bundle(tiny_bundle_int8, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_int8.root, copy)
    model = copy / MODEL_FILE
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")
    with pytest.raises(BundleError, match="altered or replaced"):
        Screener.from_path(copy)


def test_from_path_loads_a_good_bundle(tiny_bundle_float):
    assert Screener.from_path(tiny_bundle_float.root).assess(xray_bytes(17)).model_name == "tiny-float32"


def test_bundle_without_ood_section_still_scores(tiny_bundle_int8, caplog):
    metadata = {k: v for k, v in tiny_bundle_int8.metadata.items() if k != "ood"}
    options = ScreenerOptions(quality=QualityThresholds(check_orientation=False, check_film_layout=False))
    with caplog.at_level(logging.WARNING):
        screener = Screener(Bundle(tiny_bundle_int8.root, metadata), options)
    assert "out-of-distribution check is off" in caplog.text
    # noise, which only the ood check refuses (the image-level checks that would see it are off)
    noise = np.random.default_rng(3).integers(0, 256, size=(500, 500), dtype=np.uint8)
    assert screener.assess(encode(noise, "PNG")).status == "ok"


def test_noise_the_image_checks_let_through_is_refused_after_the_model(tiny_bundle_int8):
    options = ScreenerOptions(quality=QualityThresholds(check_orientation=False, check_film_layout=False))
    noise = np.random.default_rng(3).integers(0, 256, size=(500, 500), dtype=np.uint8)
    result = Screener(tiny_bundle_int8, options).assess(encode(noise, "PNG"))
    assert (result.status, result.reason, result.label) == ("rejected", OUT_OF_DISTRIBUTION, None)


def test_ood_section_of_the_wrong_size_is_refused(tiny_bundle_int8):
    ood = {**tiny_bundle_int8.metadata["ood"], "mean": [0.0] * 3, "std": [1.0] * 3}
    with pytest.raises(ValueError, match=r"ood section .* has 3 dimensions"):
        Screener(Bundle(tiny_bundle_int8.root, {**tiny_bundle_int8.metadata, "ood": ood}))


def test_assessment_is_immutable(screener):
    result = screener.assess(xray_bytes(18))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.status = "rejected"


def test_default_model_dir_is_the_shipped_bundle():
    assert default_model_dir().parts[-2:] == ("models", "mobilenetv2-int8")


def test_scoring_never_imports_tensorflow(tiny_bundle_int8, xray_file):
    code = (
        "import sys; from pathlib import Path; from edge.screener import Screener; "
        f"s = Screener.from_path({str(tiny_bundle_int8.root)!r}); "
        f"s.assess(Path({str(xray_file())!r}).read_bytes()); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras')))"
    )
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


SHIPPED = default_model_dir()
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "chest_xray" / "train"


@pytest.mark.data
@pytest.mark.skipif(not (SHIPPED / "bundle.json").is_file(), reason=f"no shipped bundle at {SHIPPED}")
@pytest.mark.skipif(not DATA.is_dir(), reason=f"real chest X-rays not found at {DATA}")
def test_shipped_bundle_scores_real_xrays_and_refuses_a_document():
    screener = Screener.from_path(SHIPPED)
    files = sorted(DATA.glob("PNEUMONIA/*.jpeg"))[:5] + sorted(DATA.glob("NORMAL/*.jpeg"))[:5]
    results = [screener.assess(path.read_bytes()) for path in files]
    assert [r.status for r in results].count("ok") >= 9
    page = np.full((1100, 850), 240, dtype=np.uint8)
    page[100:1000:30, 80:770] = 20  # lines of "text"
    assert screener.assess(encode(page, "PNG")).status == "rejected"


def test_a_decoded_film_is_assessed_as_its_file(screener):
    """The kiosk decodes once and hands the film over: the same result as from the bytes."""
    data = xray_bytes(18)
    from_bytes = screener.assess(data)
    from_film = screener.assess_image(load_xray(data), from_bytes.input_sha256)
    assert (from_film.status, from_film.label) == (from_bytes.status, from_bytes.label)
    assert from_film.probability == from_bytes.probability
    assert from_film.heatmap_png == from_bytes.heatmap_png
    assert from_film.input_sha256 == hashlib.sha256(data).hexdigest()
