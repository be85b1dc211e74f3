"""Tiny but real training runs on synthetic X-rays, exported once per session into every variant.

`tiny_run` writes a run directory directly (a small conv net trained for a few seconds, with the
trainer's layer names and files) so the default test run stays quick. `trainer_run` (slow) makes the
run with the real trainer CLI: MobileNet v1 alpha 0.25 at 128 px, so the class activation map is
4x4, not the shipped 7x7, and the exporter must read shapes from the model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.kermany import LABELS, Sample
from edge.preprocess import load_model_input
from edge.provenance import sha256_file
from lab.run_dir import CONFIG_FILE, SPLIT_FILE, write_run, write_split
from lab.synthetic import xray_bytes

REPO = Path(__file__).resolve().parents[2]
TINY_SIZE = 64
PER_CLASS = 24


def write_kermany_split(folder: Path, per_class: int, seed: int = 0) -> list[tuple[Path, int]]:
    """FOLDER/NORMAL/IM-xxxx-0001.jpeg and FOLDER/PNEUMONIA/personN_bacteria_1.jpeg, one patient each."""
    written = []
    for label_index, label in enumerate(LABELS):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            number = 1000 + seed + i
            if label == "NORMAL":
                data, name = (
                    xray_bytes(seed=seed + 2 * i, width=200, height=240),
                    f"IM-{number:04d}-0001.jpeg",
                )
            else:
                lesion = (0.25 + 0.02 * (i % 10), 0.45)
                data = xray_bytes(seed=seed + 2 * i + 1, width=200, height=240, lesion=lesion)
                name = f"person{number}_bacteria_1.jpeg"
            (folder / label / name).write_bytes(data)
            written.append((folder / label / name, label_index))
    return written


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Kermany data root: train/ with PER_CLASS patients per class, test/ with 3 per class."""
    root = tmp_path_factory.mktemp("chest_xray")
    write_kermany_split(root / "train", PER_CLASS)
    write_kermany_split(root / "test", 3, seed=500)
    return root


def _tiny_model(size: int):
    from lab.tf_env import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 1), name="xray")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalise")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu")(x)
    x = keras.layers.Conv2D(24, 3, strides=4, padding="same", activation="relu", name="features")(x)
    pooled = keras.layers.GlobalAveragePooling2D(name="embedding")(x)
    dropped = keras.layers.Dropout(0.1, name="head_dropout")(pooled)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="probability")(dropped)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    return model


@pytest.fixture(scope="session")
def tiny_run(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory as the trainer writes it, for a small conv net trained for a few epochs."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    run.mkdir()
    files = sorted((synthetic_data / "train").glob("*/*.jpeg"))
    rows = [(p, LABELS.index(p.parent.name)) for p in files]
    val = {p for i, (p, _) in enumerate(rows) if i % 6 == 0}
    images = np.stack([load_model_input(p.read_bytes(), TINY_SIZE) for p, _ in rows]).astype(np.float32)
    labels = np.array([label for _, label in rows], dtype=np.float32)
    train_mask = np.array([p not in val for p, _ in rows])
    model = _tiny_model(TINY_SIZE)
    model.fit(images[train_mask], labels[train_mask], epochs=15, batch_size=8, verbose=0)
    model.save(run / "tiny.keras")  # not the trainer's name: readers must take it from run.json
    samples = [Sample(path, label, path.stem, sha256_file(path)) for path, label in rows]
    write_split(
        run / SPLIT_FILE,
        [s for s in samples if s.path not in val],
        [s for s in samples if s.path in val],
        synthetic_data,
    )
    (run / CONFIG_FILE).write_text(json.dumps({"min_recall": 0.9, "seed": 7}))
    run_json = {
        "command": "tests/quantize/conftest.py",
        "git_commit": "test",
        "data_root": str(synthetic_data),
        "data_manifest_sha256": "0" * 64,
        "weights_sha256": None,
        "labels": list(LABELS),
        "input_size": TINY_SIZE,
        "feature_layer": "features",
        "model_file": "tiny.keras",
        "class_weights": {"NORMAL": 1.0, "PNEUMONIA": 1.0},  # the classes are balanced
    }
    write_run(run, run_json)
    return run


@pytest.fixture(scope="session")
def tiny_models(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """float32, int8 and pruned-int8 bundles of the tiny run; returns the models folder."""
    from quantize.export import export
    from quantize.settings import ExportSettings, PruneSettings

    models = tmp_path_factory.mktemp("models")
    settings = ExportSettings(
        calibration_images=16,
        ood_images=40,
        prune=PruneSettings(sparsity=0.6, epochs=3, batch_size=8, min_weights=100),
    )
    export(tiny_run, models / "tiny", settings)
    return models


@pytest.fixture(scope="session")
def trainer_run(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m trainer train` on the synthetic data, in a subprocess, as a user would run it."""
    out = tmp_path_factory.mktemp("runs") / "mobilenet"
    command = [
        sys.executable, "-m", "trainer", "train", "--data", str(synthetic_data), "--out", str(out),
        "--architecture", "mobilenet", "--alpha", "0.25", "--input-size", "128",
        "--head-epochs", "1", "--epochs", "1", "--fine-tune-from", "conv_dw_12", "--batch-size", "8",
        "--min-recall", "0.9",
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return out
