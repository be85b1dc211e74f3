"""One training run, start to finish, into a run directory that describes itself.

Run directory (the contract is lab/run_dir.py): model.keras (the last epoch), head_only.keras (the
model when fine-tuning began: the other end of a weight-space interpolation), config.json,
run.json (command, commit, hashes, threshold, class weights, timings; written last), split.csv
(patient-level), history.csv, val_predictions.csv, metrics.json, train.log, and the plots roc.png,
confusion.png, training_curves.png (trainer/plots.py).
"""

from __future__ import annotations

import csv
import json
import logging
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge.kermany import LABELS, Sample, manifest_sha256, scan_split
from edge.metrics import binary_metrics, choose_threshold, roc_auc
from lab.run_dir import (
    CONFIG_FILE,
    HEAD_ONLY_FILE,
    HISTORY_FILE,
    SPLIT_FILE,
    run_record,
    write_run,
    write_split,
)
from lab.tf_env import keras, tf
from trainer import data, model, plots
from trainer.config import TrainConfig
from trainer.split import class_weights, patient_split

log = logging.getLogger(__name__)
MODEL_FILE = "model.keras"
#: Samples -> (training samples, validation samples).
Splitter = Callable[[list[Sample]], tuple[list[Sample], list[Sample]]]


def train(
    config: TrainConfig,
    data_root: Path,
    out_dir: Path,
    monitor: Path | None = None,
    split: Splitter | None = None,
) -> dict[str, Any]:
    """Train, pick the threshold on validation patients, and write the run; returns run.json.

    `monitor`: a Kermany-layout folder ({NORMAL,PNEUMONIA}/) scored after every epoch, never trained on.
    `split`: samples -> (train, validation); default the seeded patient-level split (trainer/folds.py
    passes a leave-batch-out fold instead).
    """
    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / HISTORY_FILE).unlink(missing_ok=True)  # CSVLogger appends: a rerun must not mix in old rows
    file_log = log_to_file(out_dir / "train.log")
    try:
        return _train(config, data_root, out_dir, started, monitor, split)
    finally:
        logging.getLogger().removeHandler(file_log)  # a sweep trains many runs in one process
        file_log.close()


def _train(
    config: TrainConfig,
    data_root: Path,
    out_dir: Path,
    started: float,
    monitor: Path | None,
    split: Splitter | None,
) -> dict[str, Any]:
    keras.utils.set_random_seed(config.seed)
    config.save(out_dir / CONFIG_FILE)

    samples, duplicates = data.collect_samples(data_root)
    if config.limit:
        samples = _stratified_head(samples, config.limit, config.seed)
    if split is None:
        train_samples, val_samples = patient_split(samples, config.val_fraction, config.seed)
    else:
        train_samples, val_samples = split(samples)
    write_split(out_dir / SPLIT_FILE, train_samples, val_samples, data_root)
    train_set = data.load_images(train_samples, config.input_size, "decoding train")
    val_set = data.load_images(val_samples, config.input_size, "decoding val", config.intensity)
    weights = class_weights(train_set.samples)
    log.info(
        "train %d / val %d images; class weights %s", len(train_set.samples), len(val_set.samples), weights
    )

    monitor_set = None
    if monitor is not None:
        films = scan_split(monitor.parent, monitor.name)
        monitor_set = data.load_images(films, config.input_size, "monitor", config.intensity)
    net = model.build_model(config)
    history = _fit(net, config, train_set, val_set, weights, out_dir, monitor_set)
    best = keras.models.load_model(out_dir / MODEL_FILE)
    probabilities = best.predict(val_set.images.astype(np.float32), batch_size=64, verbose=0).ravel()
    threshold = choose_threshold(val_set.labels, probabilities, config.min_recall)
    metrics = binary_metrics(val_set.labels, probabilities, threshold, seed=config.seed)
    write_predictions(out_dir / "val_predictions.csv", val_set, probabilities)
    (out_dir / "metrics.json").write_text(json.dumps({"validation": metrics}, indent=2) + "\n")

    source = {
        "machine": f"{platform.machine()} {platform.processor() or ''} cores={_cores()}".strip(),
        "tensorflow": tf.__version__,
        "data_root": str(data_root.resolve()),
        "data_manifest_sha256": manifest_sha256(samples),
        "duplicates_dropped": len(duplicates),
        "skipped_files": [s.path.name for s, _ in train_set.skipped + val_set.skipped],
    }
    training = {
        "counts": class_counts(train_set.samples, val_set.samples),
        "class_weights": {LABELS[k]: v for k, v in weights.items()},
        "epochs_run": len(history),
        "monitor": str(monitor.resolve()) if monitor else None,
    }
    run = run_record("trainer", started, config, source, training, threshold, MODEL_FILE)
    write_run(out_dir, run)
    plots.plot_all(out_dir, val_set.labels, probabilities, metrics, config.head_epochs, "validation")
    log.info("validation: %s", metrics_summary(metrics))
    log.info("run written to %s in %.0f s", out_dir, run["wall_seconds"])
    return run


def _fit(
    net: keras.Model,
    config: TrainConfig,
    train_set: data.ImageSet,
    val_set: data.ImageSet,
    weights: dict[int, float],
    out_dir: Path,
    monitor: data.ImageSet | None,
) -> list[dict[str, float]]:
    """Head-only phase, then fine-tuning on a cosine schedule; the last epoch is saved.

    `monitor` films (a shift set such as site-calibration/) are scored after every epoch and logged
    beside the validation figures, to see how a recipe behaves on a new cohort; they choose nothing.
    """
    train_ds, steps_per_epoch = data.training_dataset(train_set, config, weights)
    val_ds = data.evaluation_dataset(val_set)
    callbacks = [] if monitor is None else [_MonitorAuc(monitor)]
    callbacks += [
        keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=True),
        keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: log.info("epoch %d: %s", epoch + 1, _fmt(logs))
        ),
    ]
    model.freeze_backbone(net)
    head_optimizer = model.make_optimizer(config.optimizer, config.head_learning_rate, config.weight_decay)
    model.compile_model(net, head_optimizer, config.label_smoothing)
    log.info("phase 1: head only, %d epochs at lr %g", config.head_epochs, config.head_learning_rate)
    first = net.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.head_epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        verbose=1,
    )
    net.save(out_dir / HEAD_ONLY_FILE)
    model.unfreeze_top(net, config.fine_tune_from, config.train_batchnorm)
    steps = steps_per_epoch * config.fine_tune_epochs
    schedule = config.fine_tune_learning_rate
    if config.schedule == "cosine":
        schedule = model.cosine_schedule(schedule, steps, warmup_steps=steps_per_epoch // 3)
    model.compile_model(
        net, model.make_optimizer(config.optimizer, schedule, config.weight_decay), config.label_smoothing
    )
    log.info(
        "phase 2: fine-tuning from %s, %s lr %g",
        config.fine_tune_from,
        config.schedule,
        config.fine_tune_learning_rate,
    )
    second = net.fit(
        train_ds,
        validation_data=val_ds,
        initial_epoch=config.head_epochs,
        epochs=config.head_epochs + config.fine_tune_epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        verbose=1,
    )
    net.save(out_dir / MODEL_FILE)
    return history_rows(first.history) + history_rows(second.history)


class _MonitorAuc(keras.callbacks.Callback):
    """Adds `monitor_auc` to each epoch's logs (listed before the CSV logger, which then records it)."""

    def __init__(self, images: data.ImageSet) -> None:
        super().__init__()
        self.images = images

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        scores = self.model.predict(self.images.images.astype(np.float32), batch_size=64, verbose=0).ravel()
        if logs is not None:
            logs["monitor_auc"] = roc_auc(self.images.labels, scores)


def history_rows(history: dict[str, list[float]]) -> list[dict[str, float]]:
    """Keras history as history.csv rows, one per epoch (the pooled run writes the same file)."""
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


def write_predictions(path: Path, image_set: data.ImageSet, probabilities: np.ndarray) -> None:
    """val_predictions.csv: what `trainer folds` and `fleet leave-site-out` read back."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("sha256", "label", "probability"))
        for sample, p in zip(image_set.samples, probabilities, strict=True):
            writer.writerow((sample.sha256, LABELS[sample.label], f"{p:.6f}"))


def class_counts(train_samples: list, val_samples: list) -> dict[str, dict[str, int]]:
    """Films per label and patients, per side of the split, for run.json."""

    def per_label(samples: list) -> dict[str, int]:
        counts = {label: sum(1 for s in samples if LABELS[s.label] == label) for label in LABELS}
        return {**counts, "patients": len({s.patient for s in samples})}

    return {"train": per_label(train_samples), "val": per_label(val_samples)}


def metrics_summary(metrics: dict[str, Any]) -> str:
    """One log line of the validation figures."""
    keys = ("accuracy", "precision", "recall", "specificity", "f1", "auc")
    return ", ".join(f"{k} {metrics[k]['value']:.4f}" for k in keys)


def _fmt(logs: dict[str, float] | None) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())


def _cores() -> int:
    import os

    return os.cpu_count() or 0


def log_to_file(path: Path) -> logging.Handler:
    """Copy the log into the run directory's train.log (remove the handler when the run ends)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler
