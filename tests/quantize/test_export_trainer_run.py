"""Slow: a run made by the real trainer CLI (MobileNet v1 0.25 at 128 px) exported and benchmarked
with every installed runtime, through the command lines a user types."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge.bundle import OUTPUT_CAM, OUTPUT_EMBEDDING, load_bundle
from edge.runtime import TfliteModel
from quantize.__main__ import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trainer_models(trainer_run, tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    args = ["export", "--run", str(trainer_run), "--out", str(models / "mnv1"), "--calibration-images", "16",
            "--ood-images", "40", "--sparsity", "0.5", "--prune-epochs", "1"]  # fmt: skip
    assert main(args) == 0
    return models


def test_mobilenet_run_exports_with_shapes_read_from_the_model(trainer_models, trainer_run):
    run = json.loads((trainer_run / "run.json").read_text())
    assert run["feature_layer"] == "conv_pw_13_relu"
    for variant in ("float32", "int8", "pruned-int8"):
        bundle = load_bundle(trainer_models / f"mnv1-{variant}")
        outputs = TfliteModel(bundle.model_path).run(np.full((128, 128, 1), 90, np.uint8))
        assert outputs[OUTPUT_CAM].shape == (1, 4, 4)
        assert outputs[OUTPUT_EMBEDDING].shape == (1, 256)
        assert bundle.metadata["provenance"]["git_commit"] == run["git_commit"]
    pruned = load_bundle(trainer_models / "mnv1-pruned-int8").metadata["provenance"]
    assert pruned["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_benchmark_cli_times_every_installed_runtime(trainer_models, synthetic_data, tmp_path):
    models = [str(trainer_models / f"mnv1-{v}") for v in ("float32", "int8", "pruned-int8")]
    out = tmp_path / "report"
    args = ["benchmark", "--data", str(synthetic_data / "test"), "--models", *models, "--out", str(out),
            "--runs", "5"]  # fmt: skip
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    runtimes = set(report["machine"]["runtimes"])
    assert {"ai-edge-litert", "tf.lite"} <= runtimes
    for entry in report["models"]:
        assert {(t["runtime"], t["threads"]) for t in entry["latency"]} == {
            (r, n) for r in runtimes for n in (1, 2)
        }
