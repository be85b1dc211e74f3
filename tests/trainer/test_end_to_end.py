"""`python -m trainer train` then `evaluate` on a synthetic Kermany folder: a real, loadable run.

Training runs as its own process, exactly as a user starts it; `evaluate` goes through the same
command-line entry point in this process, which saves a TensorFlow start-up per call.

One tiny MobileNet v1 (alpha 0.25, 96 px, from scratch) trains for one head epoch and one
fine-tuning epoch; the folder holds a corrupt file that must be skipped and reported, and a
byte-identical copy that must be dropped before the split.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.trainer.conftest import CORRUPT_NAME, write_kermany
from trainer.__main__ import main
from trainer.config import TrainConfig

pytestmark = pytest.mark.slow  # trains a model in its fixture: 90 s on 2 loaded cores

REPO = Path(__file__).resolve().parents[2]
INPUT_SIZE = 96
PLOTS = ("roc.png", "confusion.png", "training_curves.png")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "trainer", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kermany")
    write_kermany(root, "train", normal=10, pneumonia=10, size=64)
    write_kermany(root, "test", normal=4, pneumonia=4, size=64, seed=5000)
    return root


@pytest.fixture(scope="module")
def run_dir(data_root: Path) -> Path:
    out = data_root.parent / "run"
    run_cli(
        "train", "--data", str(data_root), "--out", str(out), "--architecture", "mobilenet",
        "--alpha", "0.25", "--head-epochs", "1", "--epochs", "1", "--input-size", str(INPUT_SIZE),
        "--batch-size", "8", "--val-fraction", "0.3", "--seed", "3",
    )  # fmt: skip
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_run_directory_describes_itself(run_dir: Path):
    run = json.loads((run_dir / "run.json").read_text())
    assert run["skipped_files"] == [CORRUPT_NAME]
    assert run["duplicates_dropped"] == 1
    assert 0.0 <= run["threshold"] <= 1.0
    assert (run["input_size"], run["labels"], run["model_file"]) == (
        INPUT_SIZE,
        ["NORMAL", "PNEUMONIA"],
        "model.keras",
    )
    assert run["epochs_run"] == 2
    assert set(run["counts"]) == {"train", "val"}
    config = TrainConfig.load(run_dir / "config.json")
    assert (config.architecture, config.alpha, config.input_size) == ("mobilenet", 0.25, INPUT_SIZE)
    assert config.fine_tune_from == "conv_dw_12"
    assert len(read_csv(run_dir / "history.csv")) == 2
    for name in PLOTS:
        assert (run_dir / name).stat().st_size > 0, name


def test_head_only_model_is_where_fine_tuning_started(run_dir: Path):
    """The interpolation's start: below the unfrozen layers it is the final model, above it moved."""
    from lab.tf_env import keras

    start = keras.models.load_model(run_dir / "head_only.keras", compile=False)
    end = keras.models.load_model(run_dir / "model.keras", compile=False)
    names = [layer.name for layer in end.layers]
    first_tuned = names.index("conv_dw_12")
    moved = {
        layer.name
        for layer in end.layers
        for a, b in zip(layer.get_weights(), start.get_layer(layer.name).get_weights(), strict=True)
        if not np.array_equal(a, b)
    }
    assert moved, "fine-tuning changed nothing"
    assert all(names.index(name) >= first_tuned for name in moved), sorted(moved)


def test_interpolation_runs_from_the_start_to_the_end(run_dir: Path, data_root: Path):
    from benchmarks.weight_interpolation import interpolate, interpolation_curve
    from edge.kermany import scan_split
    from lab.tf_env import keras

    start = keras.models.load_model(run_dir / "head_only.keras", compile=False)
    end = keras.models.load_model(run_dir / "model.keras", compile=False)
    for alpha, expected in ((0.0, start), (1.0, end)):
        mixed = interpolate(start, end, alpha).get_weights()
        for got, want in zip(mixed, expected.get_weights(), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    halfway = interpolate(start, end, 0.5).get_weights()
    for got, a, b in zip(halfway, start.get_weights(), end.get_weights(), strict=True):
        np.testing.assert_allclose(got, (a + b) / 2, rtol=1e-6, atol=1e-7)
    site = scan_split(data_root, "test")
    rows = interpolation_curve(run_dir, site, [0.0, 0.5, 1.0])
    assert [row[0] for row in rows] == [0.0, 0.5, 1.0]
    assert all(0.0 <= auc <= 1.0 for row in rows for auc in row[1:])


def test_split_file_keeps_patients_whole_and_drops_the_copy(run_dir: Path):
    rows = read_csv(run_dir / "split.csv")
    train = {r["patient"] for r in rows if r["subset"] == "train"}
    val = {r["patient"] for r in rows if r["subset"] == "val"}
    assert train and val and train.isdisjoint(val)
    assert {r["label"] for r in rows if r["subset"] == "val"} == {"NORMAL", "PNEUMONIA"}
    assert len({r["sha256"] for r in rows}) == len(rows)
    assert "person999" not in train | val


def test_model_loads_and_scores_a_preprocessed_film(run_dir: Path, data_root: Path):
    from edge.preprocess import load_model_input
    from lab.tf_env import keras

    model = keras.models.load_model(run_dir / "model.keras")
    assert model.input_shape == (None, INPUT_SIZE, INPUT_SIZE, 1)
    film = load_model_input((data_root / "train/PNEUMONIA/person1_bacteria_1.jpeg").read_bytes(), INPUT_SIZE)
    p = float(model.predict(film[np.newaxis].astype(np.float32), verbose=0)[0, 0])
    assert 0.0 <= p <= 1.0


def test_evaluate_heldout_matches_the_training_run(run_dir: Path):
    assert main(["evaluate", "--run", str(run_dir)]) == 0
    out = run_dir / "eval-heldout"
    report = json.loads((out / "metrics.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    assert report["metrics"]["threshold"] == run["threshold"]
    for name in ("accuracy", "precision", "recall", "specificity", "f1", "auc"):
        assert len(report["metrics"][name]["ci95"]) == 2, name
    trained = {r["sha256"]: float(r["probability"]) for r in read_csv(run_dir / "val_predictions.csv")}
    evaluated = {r["sha256"]: float(r["probability"]) for r in read_csv(out / "predictions.csv")}
    assert evaluated.keys() == trained.keys()
    assert all(evaluated[k] == pytest.approx(trained[k], abs=1e-5) for k in trained)
    assert "screening aid" in (out / "summary.md").read_text()
    for name in PLOTS:
        assert (out / name).stat().st_size > 0, name


def test_evaluate_a_folder_reports_and_skips_the_corrupt_file(run_dir: Path, data_root: Path, tmp_path: Path):
    argv = [
        "evaluate",
        "--run",
        str(run_dir),
        "--data",
        str(data_root),
        "--split",
        "test",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    report = json.loads((tmp_path / "metrics.json").read_text())
    files = list((data_root / "test").rglob("*.jpeg"))
    assert [item["file"] for item in report["skipped"]] == [f"test/NORMAL/{CORRUPT_NAME}"]
    assert report["files"] == len(files)
    assert report["metrics"]["n"] == len(files) - 1
    assert report["set"] == "test"
    assert CORRUPT_NAME in (tmp_path / "summary.md").read_text()


def test_evaluate_says_what_is_wrong(run_dir: Path, tmp_path: Path):
    with pytest.raises(SystemExit, match=r"run\.json"):
        main(["evaluate", "--run", str(tmp_path / "no-such-run")])
    with pytest.raises(SystemExit, match="--data"):
        main(["evaluate", "--run", str(run_dir), "--data", str(tmp_path)])
    with pytest.raises(SystemExit, match="Kermany layout"):
        main(["evaluate", "--run", str(run_dir), "--data", str(tmp_path), "--split", "test"])


def test_evaluate_reports_the_shift_sets(run_dir: Path, data_root: Path, tmp_path: Path):
    fullres = tmp_path / "fullres"
    for label in ("NORMAL", "PNEUMONIA"):
        (fullres / label).mkdir(parents=True)
        for path in sorted((data_root / "train" / label).glob("*.jpeg"))[:3]:
            if path.name != CORRUPT_NAME:
                with Image.open(path) as img:
                    img.resize((80, 100), Image.Resampling.LANCZOS).save(fullres / label / path.name)
    argv = ["evaluate", "--run", str(run_dir), "--out", str(tmp_path / "eval"),
            "--site", str(data_root / "test"), "--fullres", str(fullres), "--suite-films", "6"]  # fmt: skip
    assert main(argv) == 0
    shift = json.loads((tmp_path / "eval" / "metrics.json").read_text())["shift"]
    # byte-identical copies counted once, as `edge calibrate` counts them; the corrupt file refused
    unique = {hashlib.sha256(p.read_bytes()).digest() for p in (data_root / "test").rglob("*.jpeg")}
    assert shift["site"]["metrics"]["n"] == len(unique) - 1
    assert set(shift["robustness"]["changes"]) >= {"unchanged", "jpeg quality 30", "border padding 8%"}
    assert shift["robustness"]["changes"]["unchanged"]["n"] >= 5
    assert shift["fullres"]["films"] == len(list(fullres.rglob("*.jpeg")))
    assert "probabilities" not in json.dumps(shift)
    summary = (tmp_path / "eval" / "summary.md").read_text()
    assert "Shift: site films" in summary and "Shift: robustness suite" in summary
