"""`python -m fleet train` on a small two-site pool writes the single-machine run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet import pool as pooling
from lab.run_dir import read_split
from quantize.images import decode

from .conftest import make_export, provisioned, site_films

pytestmark = pytest.mark.slow  # a MobileNet at 32 px for 1 + 1 epochs: about a minute on 2 loaded cores

REPO = Path(__file__).resolve().parents[2]
RUN_FILES = {  # trainer/train.py's run directory, plus the resumable backups
    "model.keras",
    "config.json",
    "run.json",
    "split.csv",
    "history.csv",
    "val_predictions.csv",
    "metrics.json",
    "train.log",
    "roc.png",
    "confusion.png",
    "training_curves.png",
    "backup",
}


def test_pool_training_writes_the_single_machine_run_directory(tmp_path: Path) -> None:
    a = make_export(tmp_path / "ka", site_films(1, 12, 0), tmp_path / "a.zip")
    b = make_export(tmp_path / "kb", site_films(2, 12, 100), tmp_path / "b.zip")
    trusted = provisioned(tmp_path / "trusted.json", tmp_path / "ka", tmp_path / "kb")
    pooling.pool([a, b], tmp_path / "pool", 32, trusted=trusted)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "fleet", "train", "--pool", str(tmp_path / "pool"), "--out", str(run)]
    small = ["--architecture", "mobilenet", "--alpha", "0.25", "--input-size", "32", "--batch-size", "8"]
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    done = subprocess.run(
        [*command, *small, "--head-epochs", "1", "--epochs", "1", "--val-fraction", "0.3"],
        cwd=REPO,
        env={**env, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert {p.name for p in run.iterdir()} == RUN_FILES
    meta = json.loads((run / "run.json").read_text())
    assert meta["strategy"].startswith("MultiWorkerMirroredStrategy, 1 worker")
    assert len(meta["sites"]) == 2 and meta["epochs_run"] == 2
    header = (run / "history.csv").read_text().splitlines()[0]
    assert "val_auc" in header and "NA" not in (run / "history.csv").read_text()
    split = (run / "split.csv").read_text().splitlines()
    train_patients = {row.split(",")[2] for row in split[1:] if row.startswith("train,")}
    val_patients = {row.split(",")[2] for row in split[1:] if row.startswith("val,")}
    assert train_patients and val_patients and not train_patients & val_patients
    files = read_split(run / "split.csv")  # what `quantize export` reads: the films, hash-checked
    decoded = decode(tmp_path / "pool", files["train"] + files["val"], 32)
    assert decoded.images.shape == (len(split) - 1, 32, 32, 1)
