"""The benchmark end to end on a handful of synthetic X-rays, and its refusals."""

from __future__ import annotations

import json
import shutil

import pytest

from edge.bundle import BundleError
from quantize.__main__ import main
from quantize.benchmark import BenchmarkSettings, check_targets, run_benchmark
from quantize.images import scan_folder, write_file_list

pytestmark = pytest.mark.slow  # trains and exports a tiny run (tiny_models): 69 s on 2 loaded cores

MODELS = ("tiny-float32", "tiny-int8", "tiny-pruned-int8")


@pytest.fixture(scope="module")
def report(tiny_models, synthetic_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports") / "tiny"
    settings = BenchmarkSettings(runs=3, threads=(1, 2), runtimes=("ai-edge-litert",))
    result = run_benchmark(synthetic_data / "test", [tiny_models / m for m in MODELS], out, None, settings)
    return out, result


def test_report_files_are_written(report):
    out, _ = report
    assert {p.name for p in out.iterdir()} == {"report.md", "report.json", "roc.png", "latency.png"}
    text = (out / "report.md").read_text()
    assert "screening aid" in text
    assert all(name in text for name in MODELS)


def test_every_model_is_scored_on_the_same_images(report):
    _, result = report
    saved = json.loads((report[0] / "report.json").read_text())
    assert result["images"]["n"] == 6
    for entry in saved["models"]:
        metrics = entry["metrics"]
        assert metrics["n"] == 6 and metrics["n_positive"] == 3
        for name in ("accuracy", "precision", "recall", "specificity", "f1", "auc"):
            assert "ci95" in metrics[name]
        assert entry["gzip_bytes"] < entry["size_bytes"]
        assert "probabilities" not in entry


def test_float_model_agrees_with_itself_and_is_the_reference(report):
    _, result = report
    reference = result["models"][0]
    assert reference["agreement"] == {
        "reference": "tiny-float32",
        "same_label": 1.0,
        "max_probability_difference": 0.0,
        "mean_probability_difference": 0.0,
    }
    for entry in result["models"][1:]:
        assert 0.0 <= entry["agreement"]["same_label"] <= 1.0


def test_latency_and_memory_per_runtime_and_thread_count(report):
    _, result = report
    for entry in result["models"]:
        rows = {(t["runtime"], t["threads"]) for t in entry["latency"]}
        assert rows == {("ai-edge-litert", 1), ("ai-edge-litert", 2)}
        for timing in entry["latency"]:
            assert 0 < timing["p50_ms"] <= timing["p95_ms"]
            assert timing["peak_rss_mb"] >= timing["rss_before_model_mb"] > 0
            assert timing["runs"] == 3
    assert result["machine"]["cores"] >= 1
    assert "ai-edge-litert" in result["machine"]["runtimes"]


def test_targets_are_checked_from_measured_values(report):
    _, result = report
    names = {t["target"] for t in result["targets"]}
    assert "int8 model <= 3 MB" in names
    assert "pruned gzipped <= 60% of int8 gzipped" in names
    assert all(isinstance(t["met"], bool) for t in result["targets"])


def test_check_targets_flags_an_int8_model_that_loses_f1():
    def model(variant, f1, size=1_000_000, gz=900_000):
        return {"variant": variant, "metrics": {"f1": {"value": f1}}, "size_bytes": size, "gzip_bytes": gz,
                "latency": []}  # fmt: skip

    targets = {t["target"]: t for t in check_targets([model("float32", 0.95), model("int8", 0.94)])}
    assert targets["int8 F1 within 0.5 points of float32"]["met"] is False
    assert targets["int8 F1 within 0.5 points of float32"]["value"] == "1.00 points lost"


def test_a_split_list_selects_and_verifies_files(tiny_models, synthetic_data, tmp_path):
    _, files = scan_folder(synthetic_data / "test")
    listed = tmp_path / "two.csv"
    write_file_list(listed, [files[0], files[-1]])
    settings = BenchmarkSettings(runs=1, threads=(1,), runtimes=("ai-edge-litert",))
    result = run_benchmark(synthetic_data, [tiny_models / "tiny-int8"], tmp_path / "r", listed, settings)
    assert result["images"]["n"] == 2


def test_an_altered_bundle_is_refused_before_anything_is_written(tiny_models, synthetic_data, tmp_path):
    copy = tmp_path / "tiny-int8"
    shutil.copytree(tiny_models / "tiny-int8", copy)
    data = bytearray((copy / "model.tflite").read_bytes())
    data[100] ^= 0xFF
    (copy / "model.tflite").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        run_benchmark(synthetic_data / "test", [copy], tmp_path / "r", None, BenchmarkSettings(runs=1))
    assert not (tmp_path / "r").exists()


def test_cli_exits_non_zero_with_the_reason(tiny_models, synthetic_data, tmp_path):
    copy = tmp_path / "tiny-int8"
    shutil.copytree(tiny_models / "tiny-int8", copy)
    (copy / "model.tflite").write_bytes(b"not a model")
    with pytest.raises(SystemExit, match=r"^benchmark: .*altered or replaced"):
        main(["benchmark", "--data", str(synthetic_data / "test"), "--models", str(copy), "--out",
              str(tmp_path / "r")])  # fmt: skip


def test_a_changed_image_file_is_refused(tiny_models, synthetic_data, tmp_path):
    _, files = scan_folder(synthetic_data / "test")
    listed = tmp_path / "list.csv"
    write_file_list(listed, [files[0]])
    data_root = tmp_path / "data"
    shutil.copytree(synthetic_data / "test", data_root / "test")
    (data_root / files[0].path).write_bytes(b"\xff\xd8 different bytes")
    settings = BenchmarkSettings(runs=1, threads=(1,), runtimes=("ai-edge-litert",))
    with pytest.raises(ValueError, match="does not match its listed sha256"):
        run_benchmark(data_root, [tiny_models / "tiny-int8"], tmp_path / "r", listed, settings)
