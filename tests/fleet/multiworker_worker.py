"""One worker of the loopback multi-worker test: a tiny convnet on 32 px synthetic films, a few steps.

Run as `python -m tests.fleet.multiworker_worker OUT EPOCHS` with TF_CONFIG set (or not, for the
single-process reference). Writes OUT/initial-INDEX.npz, OUT/weights-INDEX.npz and
OUT/epochs-INDEX.json (epochs this process ran); only the chief writes OUT/history.csv.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from fleet.distributed import cluster_spec, distributed_batches, fit, make_strategy
from lab.tf_env import keras, tf

FILMS, SIZE, GLOBAL_BATCH = 64, 32, 16


def films() -> tuple[np.ndarray, np.ndarray]:
    """Deterministic films: label 1 has a bright blob, so the loss really falls."""
    rng = np.random.default_rng(0)
    images = rng.normal(90, 20, (FILMS, SIZE, SIZE, 1))
    labels = (np.arange(FILMS) % 2).astype(np.float32)
    images[labels == 1, 8:16, 8:16] += 80
    return np.clip(images, 0, 255).astype(np.float32), labels


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(7)
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    net = keras.Model(inputs, outputs)
    net.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.BinaryCrossentropy())
    return net


def make_dataset(pipelines: int, pipeline: int, per_replica: int) -> tf.data.Dataset:
    """Worker i takes films i, i+n, ...: step k's global batch is films [k*B, (k+1)*B) on any cluster."""
    images, labels = films()
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).shard(pipelines, pipeline)
    return ds.batch(per_replica, drop_remainder=True).repeat()


def main(out: Path, epochs: int) -> None:
    _, index, chief = cluster_spec()
    strategy = make_strategy()
    with strategy.scope():
        net = tiny_model()
    np.savez(out / f"initial-{index}.npz", *net.get_weights())
    batches = distributed_batches(strategy, make_dataset, GLOBAL_BATCH)
    logger = [keras.callbacks.CSVLogger(str(out / "history.csv"), append=True)] if chief else []
    history = fit(net, batches, (0, epochs), FILMS // GLOBAL_BATCH, out / "backup", logger)
    np.savez(out / f"weights-{index}.npz", *net.get_weights())
    (out / f"epochs-{index}.json").write_text(json.dumps(len(history.get("loss", []))))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
