"""Training across machines with TensorFlow's MultiWorkerMirroredStrategy, from a pool of clinics' films.

Every worker runs the same command with its own `TF_CONFIG` (the cluster's addresses and its own
index); without one the strategy is a single local worker, so one code path serves a laptop and a
cluster. Each step's global batch is split across workers (explicit sharding: worker i of n reads
films i, i+n, ... and batches its share), gradients are all-reduced, and every worker holds the same
weights. `BackupAndRestore` checkpoints every epoch, so a worker that dies is restarted with the same
command and the whole cluster resumes from the last finished epoch. Only the chief writes the run
directory, the same files as a single-machine run (trainer/train.py); the others keep their backups
in worker-private folders that tf_keras makes and removes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.kermany import LABELS, Sample, manifest_sha256
from edge.metrics import binary_metrics, choose_threshold
from fleet import records as pool_records
from fleet.pool import POOL_FILE
from fleet.shards import read_films
from lab.run_dir import CONFIG_FILE, HISTORY_FILE, SPLIT_FILE, run_record, write_run, write_split
from lab.tf_env import keras, tf
from trainer import data, model, plots
from trainer.config import TrainConfig
from trainer.split import class_weights
from trainer.train import (  # the single-machine run's writers: one run directory format
    MODEL_FILE,
    class_counts,
    history_rows,
    log_to_file,
    metrics_summary,
    write_predictions,
)

log = logging.getLogger(__name__)

BACKUP_DIR = "backup"  # inside the run directory: per-phase BackupAndRestore checkpoints
#: (number of input pipelines, this pipeline's index, per-replica batch size) -> batched dataset
DatasetFn = Callable[[int, int, int], tf.data.Dataset]


def cluster_spec() -> tuple[int, int, bool]:
    """(workers, this worker's index, is chief) from TF_CONFIG; a lone process is worker 0 of 1, chief."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    workers = config.get("cluster", {}).get("worker", [None])
    task = config.get("task", {"type": "worker", "index": 0})
    has_chief = "chief" in config.get("cluster", {})
    chief = task["type"] == "chief" or (not has_chief and task["type"] == "worker" and task["index"] == 0)
    return len(workers) + int(has_chief), int(task["index"]), chief


def make_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    """The multi-worker strategy; collectives over the network (RING), the same code for one worker."""
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def distributed_batches(
    strategy: tf.distribute.Strategy, make_dataset: DatasetFn, global_batch: int
) -> tf.distribute.DistributedDataset:
    """Each input pipeline (one per worker) builds its own share, batched per replica."""

    def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
        per_replica = context.get_per_replica_batch_size(global_batch)
        return make_dataset(context.num_input_pipelines, context.input_pipeline_id, per_replica)

    return strategy.distribute_datasets_from_function(per_worker)


def fit(
    net: keras.Model,
    batches: tf.distribute.DistributedDataset,
    epochs: tuple[int, int],
    steps_per_epoch: int,
    backup_dir: Path,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    validation: tf.data.Dataset | None = None,
) -> dict[str, list[float]]:
    """`net.fit` from epoch `epochs[0]` to `epochs[1]`, resumable: the backup is kept after the phase,
    so a restarted worker skips a finished phase and resumes an unfinished one at its last epoch."""
    backup = keras.callbacks.BackupAndRestore(str(backup_dir), delete_checkpoint=False)
    history = net.fit(
        batches,
        validation_data=validation,
        initial_epoch=epochs[0],
        epochs=epochs[1],
        steps_per_epoch=steps_per_epoch,
        callbacks=[backup, *callbacks],
        verbose=2,
    )
    return history.history


def train_pool(
    config: TrainConfig,
    pool_dir: Path,
    out_dir: Path,
    split: Callable[[list[pool_records.Record]], tuple[list, list]] | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> dict[str, Any] | None:
    """Train the recipe of trainer/train.py on a pool, on every worker; the chief returns run.json.

    `split`: records -> (train, validation), default the seeded patient-group split; `strategy`: one
    made by `make_strategy` before any other TensorFlow op (a process can make only one).
    """
    started = time.monotonic()
    workers, index, chief = cluster_spec()
    strategy = strategy or make_strategy()
    keras.utils.set_random_seed(config.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    file_log = log_to_file(out_dir / "train.log") if chief else None
    try:
        records = pool_records.trainable(pool_records.read_records(pool_dir))
        groups = pool_records.patient_groups(records)
        if split is None:
            train_records, val_records = pool_records.group_split(records, config.val_fraction, config.seed)
        else:
            train_records, val_records = split(records)
        train_samples = [_sample(pool_dir, r, groups) for r in train_records]
        val_samples = [_sample(pool_dir, r, groups) for r in val_records]
        weights = class_weights(train_samples)
        mine = train_records[index::workers]  # this worker's share; the union over workers is all
        log.info("worker %d of %d: %d of %d training films", index, workers, len(mine), len(train_records))
        shard_set = _load(pool_dir, mine, [_sample(pool_dir, r, groups) for r in mine], "train share")
        global_batch = config.batch_size
        steps = math.ceil(len(train_records) / global_batch)
        with strategy.scope():
            net = model.build_model(config)
        history_csv = out_dir / HISTORY_FILE
        if chief:
            if not (out_dir / BACKUP_DIR).exists():  # a fresh run; a resumed one keeps its epochs
                history_csv.unlink(missing_ok=True)
            config.save(out_dir / CONFIG_FILE)
            write_split(out_dir / SPLIT_FILE, train_samples, val_samples, pool_dir)
        callbacks = [keras.callbacks.CSVLogger(str(history_csv), append=True)] if chief else []

        def make_dataset(pipelines: int, pipeline: int, per_replica: int) -> tf.data.Dataset:
            # one pipeline per worker: the films were already divided by worker above
            del pipelines, pipeline
            replica_config = dataclasses.replace(config, batch_size=per_replica)
            return data.training_dataset(shard_set, replica_config, weights)[0]

        batches = distributed_batches(strategy, make_dataset, global_batch)
        val_set = _load(pool_dir, val_records, val_samples, "validation")
        val_ds = data.evaluation_dataset(val_set).with_options(_by_data())
        backup = out_dir / BACKUP_DIR
        rows = _two_phases(strategy, net, config, (batches, val_ds), steps, backup, callbacks)
        if not chief:
            return None
        return _finish(
            config, pool_dir, out_dir, net, (train_samples, val_set), weights, rows, started, workers
        )
    finally:
        if file_log is not None:
            logging.getLogger().removeHandler(file_log)
            file_log.close()


def _two_phases(
    strategy: tf.distribute.Strategy,
    net: keras.Model,
    config: TrainConfig,
    datasets: tuple[tf.distribute.DistributedDataset, tf.data.Dataset],
    steps: int,
    backup: Path,
    callbacks: list[keras.callbacks.Callback],
) -> list[dict[str, float]]:
    """The single-machine recipe's head-only phase, then fine-tuning, each compiled in the scope."""
    batches, validation = datasets
    with strategy.scope():
        model.freeze_backbone(net)
        head = model.make_optimizer(config.optimizer, config.head_learning_rate, config.weight_decay)
        model.compile_model(net, head, config.label_smoothing)
    first = fit(net, batches, (0, config.head_epochs), steps, backup / "phase-1", callbacks, validation)
    with strategy.scope():
        model.unfreeze_top(net, config.fine_tune_from or "", config.train_batchnorm)
        rate: Any = config.fine_tune_learning_rate
        if config.schedule == "cosine":
            total = steps * config.fine_tune_epochs
            rate = model.cosine_schedule(rate, total, warmup_steps=steps // 3)
        tune = model.make_optimizer(config.optimizer, rate, config.weight_decay)
        model.compile_model(net, tune, config.label_smoothing)
    total_epochs = config.head_epochs + config.fine_tune_epochs
    second = fit(
        net, batches, (config.head_epochs, total_epochs), steps, backup / "phase-2", callbacks, validation
    )
    return history_rows(first) + history_rows(second)


def _finish(
    config: TrainConfig,
    pool_dir: Path,
    out_dir: Path,
    net: keras.Model,
    samples: tuple[list[Sample], data.ImageSet],
    weights: dict[int, float],
    rows: list[dict[str, float]],
    started: float,
    workers: int,
) -> dict[str, Any]:
    """The chief's run directory: a plain (undistributed) copy of the model scores the validation films."""
    train_samples, val_set = samples
    val_samples = val_set.samples
    plain = model.build_model(config)
    plain.set_weights(net.get_weights())
    plain.save(out_dir / MODEL_FILE)
    probabilities = plain.predict(val_set.images.astype(np.float32), batch_size=64, verbose=0).ravel()
    threshold = choose_threshold(val_set.labels, probabilities, config.min_recall)
    metrics = binary_metrics(val_set.labels, probabilities, threshold, seed=config.seed)
    write_predictions(out_dir / "val_predictions.csv", val_set, probabilities)
    (out_dir / "metrics.json").write_text(json.dumps({"validation": metrics}, indent=2) + "\n")
    pool = json.loads((pool_dir / POOL_FILE).read_text(encoding="utf-8"))
    source = {
        "machine": f"{platform.machine()} cores={os.cpu_count() or 0}",
        "strategy": f"MultiWorkerMirroredStrategy, {workers} worker(s), global batch {config.batch_size}",
        "tensorflow": tf.__version__,
        "data_root": str(pool_dir.resolve()),
        "pool_updated_utc": pool.get("updated_utc"),
        "data_manifest_sha256": manifest_sha256([*train_samples, *val_samples]),
        "sites": pool_records.sites(pool_records.read_records(pool_dir)),
    }
    training = {
        "counts": class_counts(train_samples, val_samples),
        "class_weights": {LABELS[k]: v for k, v in weights.items()},
        "epochs_run": len(rows),
    }
    run = run_record("fleet", started, config, source, training, threshold, MODEL_FILE)
    write_run(out_dir, run)
    plots.plot_all(out_dir, val_set.labels, probabilities, metrics, config.head_epochs, "validation")
    log.info("validation: %s", metrics_summary(metrics))
    return run


def _by_data() -> tf.data.Options:
    """Validation films are in memory, not files: every worker evaluates its share of the batches."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def _sample(pool_dir: Path, record: pool_records.Record, groups: dict[str, str]) -> Sample:
    """A pool film as the trainer's Sample: its Kermany-layout file (what quantize and evaluate read)
    and the patient group as its patient."""
    return Sample(
        pool_dir / record.film_path, record.label, groups[record.content_sha256], record.file_sha256
    )


def _load(
    pool_dir: Path, films: Sequence[pool_records.Record], samples: Sequence[Sample], what: str
) -> data.ImageSet:
    """Decode the films from the shards, in the given order, as the trainer's ImageSet."""
    shards = sorted({pool_dir / r.shard for r in films})
    found = {sha: image for sha, image, _ in read_films(shards, {r.content_sha256 for r in films})}
    log.info("%s: %d films decoded from %d shards", what, len(found), len(shards))
    images = np.stack([found[r.content_sha256] for r in films])
    labels = np.array([r.label for r in films], dtype=np.float32)
    return data.ImageSet(images, labels, list(samples), [])
