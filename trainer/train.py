"""One training run, start to finish, into a run directory that describes itself.

Run directory: model.keras (best validation AUC), config.json, run.json (command, commit, hashes,
threshold, timings), split.csv (patient-level), history.csv, val_predictions.csv, metrics.json, train.log,
and the plots roc.png, confusion.png, training_curves.png (trainer/plots.py).
"""

from __future__ import annotations

import csv
import json
import logging
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edge.kermany import LABELS, manifest_sha256
from edge.metrics import binary_metrics, choose_threshold
from trainer import data, model, plots
from trainer.config import TrainConfig
from trainer.split import class_weights, patient_split, write_split
from trainer.tf_env import keras, tf

log = logging.getLogger(__name__)
MODEL_FILE = "model.keras"


def train(config: TrainConfig, data_root: Path, out_dir: Path) -> dict[str, Any]:
    """Train, pick the threshold on validation patients, and write the run; returns run.json."""
    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "history.csv").unlink(missing_ok=True)  # CSVLogger appends: a rerun must not mix in old rows
    file_log = _log_to_file(out_dir / "train.log")
    try:
        return _train(config, data_root, out_dir, started)
    finally:
        logging.getLogger().removeHandler(file_log)  # a sweep trains many runs in one process
        file_log.close()


def _train(config: TrainConfig, data_root: Path, out_dir: Path, started: float) -> dict[str, Any]:
    keras.utils.set_random_seed(config.seed)
    config.save(out_dir / "config.json")

    samples, duplicates = data.collect_samples(data_root)
    if config.limit:
        samples = _stratified_head(samples, config.limit, config.seed)
    train_samples, val_samples = patient_split(samples, config.val_fraction, config.seed)
    write_split(out_dir / "split.csv", train_samples, val_samples, data_root)
    train_set = data.load_images(train_samples, config.input_size, "decoding train")
    val_set = data.load_images(val_samples, config.input_size, "decoding val")
    weights = class_weights(train_set.samples)
    log.info(
        "train %d / val %d images; class weights %s", len(train_set.samples), len(val_set.samples), weights
    )

    net = model.build_model(config)
    history = _fit(net, config, train_set, val_set, weights, out_dir)
    best = keras.models.load_model(out_dir / MODEL_FILE)
    probabilities = best.predict(val_set.images.astype(np.float32), batch_size=64, verbose=0).ravel()
    threshold = choose_threshold(val_set.labels, probabilities, config.min_recall)
    metrics = binary_metrics(val_set.labels, probabilities, threshold, seed=config.seed)
    _write_predictions(out_dir / "val_predictions.csv", val_set, probabilities)
    (out_dir / "metrics.json").write_text(json.dumps({"validation": metrics}, indent=2) + "\n")

    run = {
        "command": " ".join([Path(sys.executable).name, "-m", "trainer", *sys.argv[1:]]),
        "git_commit": _git_commit(),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(time.monotonic() - started, 1),
        "machine": f"{platform.machine()} {platform.processor() or ''} cores={_cores()}".strip(),
        "tensorflow": tf.__version__,
        "data_root": str(data_root.resolve()),
        "data_manifest_sha256": manifest_sha256(samples),
        "duplicates_dropped": len(duplicates),
        "skipped_files": [s.path.name for s, _ in train_set.skipped + val_set.skipped],
        "weights": str(config.weights) if config.weights else None,
        "weights_sha256": model.weights_sha256(config.weights),
        "counts": _counts(train_set.samples, val_set.samples),
        "class_weights": {LABELS[k]: v for k, v in weights.items()},
        "epochs_run": len(history),
        "threshold": threshold,
        "threshold_rule": f"highest threshold with validation recall >= {config.min_recall}",
        "labels": list(LABELS),
        "input_size": config.input_size,
        "feature_layer": config.feature_layer,
        "model_file": MODEL_FILE,
    }
    (out_dir / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    plots.plot_all(out_dir, val_set.labels, probabilities, metrics, config.head_epochs, "validation")
    log.info("validation: %s", _summary(metrics))
    log.info("run written to %s in %.0f s", out_dir, run["wall_seconds"])
    return run


def _fit(
    net: keras.Model,
    config: TrainConfig,
    train_set: data.ImageSet,
    val_set: data.ImageSet,
    weights: dict[int, float],
    out_dir: Path,
) -> list[dict[str, float]]:
    """Head-only phase, then fine-tuning of the upper backbone; best validation AUC kept."""
    train_ds = data.make_dataset(train_set, config.batch_size, config, training=True)
    val_ds = data.make_dataset(val_set, 64, config, training=False)
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(out_dir / MODEL_FILE), monitor="val_auc", mode="max", save_best_only=True
    )
    csv_logger = keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=True)
    epoch_log = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: log.info("epoch %d: %s", epoch + 1, _fmt(logs))
    )

    model.freeze_backbone(net)
    model.compile_model(net, config.optimizer, config.head_learning_rate)
    log.info("phase 1: head only, %d epochs at lr %g", config.head_epochs, config.head_learning_rate)
    first = net.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.head_epochs,
        class_weight=weights,
        callbacks=[checkpoint, csv_logger, epoch_log],
        verbose=1,
    )
    model.unfreeze_top(net, config.fine_tune_from)
    model.compile_model(net, config.optimizer, config.fine_tune_learning_rate)
    log.info("phase 2: fine-tuning from %s, lr %g", config.fine_tune_from, config.fine_tune_learning_rate)
    stop = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=config.early_stopping_patience
    )
    second = net.fit(
        train_ds,
        validation_data=val_ds,
        initial_epoch=config.head_epochs,
        epochs=config.head_epochs + config.fine_tune_epochs,
        class_weight=weights,
        callbacks=[checkpoint, csv_logger, epoch_log, stop],
        verbose=1,
    )
    return _rows(first.history) + _rows(second.history)


def _rows(history: dict[str, list[float]]) -> list[dict[str, float]]:
    keys = list(history)
    return [{k: float(history[k][i]) for k in keys} for i in range(len(history[keys[0]]))] if keys else []


def _stratified_head(samples: list, limit: int, seed: int) -> list:
    """A reproducible subset keeping the class balance, for quick runs."""
    rng = np.random.default_rng(seed)
    picked = []
    for label in range(len(LABELS)):
        of_label = [s for s in samples if s.label == label]
        share = round(limit * len(of_label) / len(samples))
        picked += [of_label[i] for i in sorted(rng.permutation(len(of_label))[:share])]
    return picked


def _write_predictions(path: Path, image_set: data.ImageSet, probabilities: np.ndarray) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("sha256", "label", "probability"))
        for sample, p in zip(image_set.samples, probabilities, strict=True):
            writer.writerow((sample.sha256, LABELS[sample.label], f"{p:.6f}"))


def _counts(train_samples: list, val_samples: list) -> dict[str, dict[str, int]]:
    def per_label(samples: list) -> dict[str, int]:
        counts = {label: sum(1 for s in samples if LABELS[s.label] == label) for label in LABELS}
        return {**counts, "patients": len({s.patient for s in samples})}

    return {"train": per_label(train_samples), "val": per_label(val_samples)}


def _summary(metrics: dict[str, Any]) -> str:
    keys = ("accuracy", "precision", "recall", "specificity", "f1", "auc")
    return ", ".join(f"{k} {metrics[k]['value']:.4f}" for k in keys)


def _fmt(logs: dict[str, float] | None) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())


def _git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout
        return commit + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cores() -> int:
    import os

    return os.cpu_count() or 0


def _log_to_file(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler
