"""Export of a tiny run into every variant: signature, input type, agreement, sparsity, thresholds, ood."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.bundle import (
    OUTPUT_CAM,
    OUTPUT_EMBEDDING,
    OUTPUT_FEATURES,
    OUTPUT_PROBABILITY,
    Bundle,
    BundleError,
    load_bundle,
)
from edge.calibration import Head
from edge.kermany import LABELS
from edge.metrics import choose_threshold
from edge.preprocess import load_model_input
from edge.runtime import TfliteModel
from edge.screener import Screener
from lab.synthetic import xray_bytes
from quantize.calibrate import score_model
from tests.quantize.conftest import TINY_SIZE

pytestmark = pytest.mark.slow  # trains and exports a tiny run (tiny_run): 47 s on 2 loaded cores

VARIANTS = ("float32", "int8", "pruned-int8")


def _bundle(models: Path, variant: str):
    return load_bundle(models / f"tiny-{variant}")


def _images(count: int, size: int = TINY_SIZE) -> list[np.ndarray]:
    return [load_model_input(xray_bytes(seed=300 + s, width=220, height=260), size) for s in range(count)]


def _val_images(run: Path) -> tuple[np.ndarray, np.ndarray]:
    data_root = Path(json.loads((run / "run.json").read_text())["data_root"])
    with (run / "split.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["subset"] == "val"]
    images = np.stack([load_model_input((data_root / r["path"]).read_bytes(), TINY_SIZE) for r in rows])
    return images, np.array([LABELS.index(r["label"]) for r in rows])


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_is_a_verified_bundle_with_named_outputs(tiny_models, variant):
    bundle = _bundle(tiny_models, variant)
    model = TfliteModel(bundle.model_path)
    assert bundle.name == f"tiny-{variant}"
    assert bundle.metadata["variant"] == variant
    assert model.output_names == (OUTPUT_CAM, OUTPUT_EMBEDDING, OUTPUT_FEATURES, OUTPUT_PROBABILITY)
    outputs = model.run(_images(1)[0])
    assert {k: list(v.shape) for k, v in outputs.items()} == {
        k: v["shape"] for k, v in bundle.metadata["outputs"].items()
    }
    assert outputs[OUTPUT_CAM].shape == (1, 4, 4)  # read from the model, not assumed 7x7
    assert outputs[OUTPUT_EMBEDDING].shape == (1, 24)
    assert outputs[OUTPUT_FEATURES].shape == (1, 4, 4, 24)


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_the_kiosk_draws_the_cam_with_the_bundles_own_head(tiny_models, variant):
    """From the features output, so a head refitted on a site's films explains its own decision."""
    bundle = _bundle(tiny_models, variant)
    screener = Screener(bundle)
    outputs = screener.model.run(_images(1)[0])
    tolerance = 1e-4 if variant == "float32" else 0.1  # the int8 cam output has its own quantisation
    assert screener._cam(outputs) == pytest.approx(outputs[OUTPUT_CAM][0], abs=tolerance)
    refitted = Head(-bundle.head.kernel, -bundle.head.bias)
    site = Screener(Bundle(bundle.root, {**bundle.metadata, "head": refitted.to_metadata()}))
    assert site._cam(outputs) == pytest.approx(-screener._cam(outputs), abs=1e-9)


@pytest.mark.parametrize("variant", ["int8", "pruned-int8"])
def test_integer_variants_take_raw_uint8_pixels_in_ai_edge_litert(tiny_models, variant):
    bundle = _bundle(tiny_models, variant)
    model = TfliteModel(bundle.model_path)
    assert model.runtime_name.startswith("ai-edge-litert")
    assert model.input_dtype == np.uint8
    assert model._input_quant.scale == pytest.approx(1.0)
    assert model._input_quant.zero_point == 0
    assert bundle.metadata["input"]["dtype"] == "uint8"
    assert bundle.metadata["provenance"]["calibration_images"] == 16
    assert bundle.metadata["provenance"]["calibration_subset"] == "train"


def test_float_and_int8_agree_on_synthetic_xrays(tiny_models):
    float_bundle, int8_bundle = _bundle(tiny_models, "float32"), _bundle(tiny_models, "int8")
    float32, int8 = TfliteModel(float_bundle.model_path), TfliteModel(int8_bundle.model_path)
    images = np.stack(_images(8))
    a, b = score_model(float32, images, float_bundle.head), score_model(int8, images, int8_bundle.head)
    assert np.abs(a.probabilities - b.probabilities).max() < 0.05
    for row_a, row_b in zip(a.embeddings, b.embeddings, strict=True):
        assert np.corrcoef(row_a, row_b)[0, 1] > 0.98


def test_int8_probability_keeps_full_precision_through_the_float_head(tiny_models):
    """The in-graph int8 sigmoid has 256 levels; the float head on the embedding is closer to float32."""
    float_bundle, int8_bundle = _bundle(tiny_models, "float32"), _bundle(tiny_models, "int8")
    float32, int8 = TfliteModel(float_bundle.model_path), TfliteModel(int8_bundle.model_path)
    images = np.stack(_images(24))
    reference = score_model(float32, images, float_bundle.head).probabilities
    head = score_model(int8, images, int8_bundle.head).probabilities
    in_graph = np.array([float(int8.run(image)[OUTPUT_PROBABILITY][0, 0]) for image in images])
    assert len(np.unique(head)) == len(images)
    assert np.abs(head - reference).mean() < np.abs(in_graph - reference).mean()


def test_head_matches_the_float_models_own_probability(tiny_models):
    bundle = _bundle(tiny_models, "float32")
    model = TfliteModel(bundle.model_path)
    images = np.stack(_images(4))
    in_graph = np.array([float(model.run(image)[OUTPUT_PROBABILITY][0, 0]) for image in images])
    assert score_model(model, images, bundle.head).probabilities == pytest.approx(in_graph, abs=1e-5)


def test_cam_mean_is_the_logit_of_the_probability(tiny_models):
    model = TfliteModel(_bundle(tiny_models, "float32").model_path)
    for image in _images(3):
        out = model.run(image)
        p = float(out[OUTPUT_PROBABILITY][0, 0])
        assert float(out[OUTPUT_CAM].mean()) == pytest.approx(np.log(p / (1 - p)), abs=1e-3)


def test_achieved_sparsity_matches_the_target(tiny_models):
    pruning = _bundle(tiny_models, "pruned-int8").metadata["provenance"]["pruning"]
    assert pruning["sparsity"] == 0.6
    assert pruning["measured_sparsity"]["pruned_kernels"] == pytest.approx(0.6, abs=0.01)
    assert _bundle(tiny_models, "pruned-int8").metadata["provenance"]["sparsity"] == pytest.approx(
        0.6, abs=0.01
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_threshold_is_recalibrated_through_the_tflite_model(tiny_models, tiny_run, variant):
    bundle = _bundle(tiny_models, variant)
    images, labels = _val_images(tiny_run)
    probabilities = score_model(TfliteModel(bundle.model_path), images, bundle.head).probabilities
    assert bundle.threshold == pytest.approx(choose_threshold(labels, probabilities, 0.9))
    metrics = bundle.metadata["validation_metrics"]
    assert metrics["n"] == len(labels)
    assert metrics["recall"]["value"] >= 0.9


@pytest.mark.parametrize("variant", VARIANTS)
def test_ood_gate_refuses_about_half_a_percent_of_training_images(tiny_models, variant):
    ood = _bundle(tiny_models, variant).metadata["ood"]
    assert ood["statistic"] == "rms_z"
    assert len(ood["mean"]) == len(ood["std"]) == 24
    assert min(ood["std"]) > 0
    assert ood["false_reject_rate"] <= 0.005 + 1 / ood["threshold_images"]
    # 40 training images split in two, each set clean and once re-acquired (lab.shift.random_acquisition)
    assert ood["fit_images"] == ood["threshold_images"] == 40
    assert 0.0 <= ood["validation_false_reject_rate"] <= 1.0
    assert ood["threshold"] > 0


def test_ood_recalibration_rewrites_only_the_ood_section(tiny_models, tiny_run, tmp_path):
    from quantize.export import recalibrate_ood
    from quantize.settings import ExportSettings

    copy = tmp_path / "tiny-int8"
    shutil.copytree(tiny_models / "tiny-int8", copy)
    before = load_bundle(copy)
    (after,) = recalibrate_ood(tiny_run, [copy], ExportSettings(ood_images=20))
    assert after.model_sha256 == before.model_sha256
    assert after.metadata["ood"]["created_utc"]
    unchanged = {k: v for k, v in after.metadata.items() if k != "ood"}
    assert unchanged == {k: v for k, v in before.metadata.items() if k != "ood"}


def test_ood_recalibration_refuses_a_bundle_of_another_run(tiny_models, tiny_run, tmp_path):
    from quantize.export import recalibrate_ood
    from quantize.settings import ExportSettings

    other = tmp_path / "other"
    shutil.copytree(tiny_run, other)
    with pytest.raises(ValueError, match="was not exported from"):
        recalibrate_ood(other, [tiny_models / "tiny-int8"], ExportSettings(ood_images=20))


def test_heldout_list_is_the_runs_validation_split(tiny_models, tiny_run):
    with (tiny_run / "split.csv").open(newline="") as handle:
        val = {(r["sha256"], r["label"], r["path"]) for r in csv.DictReader(handle) if r["subset"] == "val"}
    with (tiny_models / "heldout-validation.csv").open(newline="") as handle:
        listed = {(r["sha256"], r["label"], r["path"]) for r in csv.DictReader(handle)}
    assert listed == val


def test_a_bundle_with_one_byte_changed_is_refused(tiny_models, tmp_path):
    copy = tmp_path / "tiny-int8"
    shutil.copytree(tiny_models / "tiny-int8", copy)
    data = bytearray((copy / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "model.tflite").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="altered or replaced"):
        load_bundle(copy)
