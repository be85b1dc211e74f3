"""From a Kermany folder to augmented tf.data batches, through the edge's own preprocessing."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.kermany import Sample, drop_duplicates, scan_split
from edge.preprocess import ImageError, load_model_input
from trainer.config import TrainConfig
from trainer.tf_env import keras, tf

log = logging.getLogger(__name__)


@dataclass
class ImageSet:
    """Decoded model inputs for a list of samples; unreadable files are listed, not fatal."""

    images: np.ndarray  # uint8 (n, size, size, 1)
    labels: np.ndarray  # float32 (n,)
    samples: list[Sample]
    skipped: list[tuple[Sample, str]]


def collect_samples(data_root: Path, split: str = "train") -> tuple[list[Sample], list[Sample]]:
    """All unique images of a split, and the byte-identical copies that were dropped."""
    samples, duplicates = drop_duplicates(scan_split(data_root, split))
    log.info(
        "%s/%s: %d unique images, %d duplicates dropped", data_root, split, len(samples), len(duplicates)
    )
    return samples, duplicates


def load_images(samples: Sequence[Sample], size: int, desc: str = "decoding") -> ImageSet:
    """Decode every file with `edge.preprocess`; a broken file is logged and skipped."""
    images, kept, skipped = [], [], []
    for sample in tqdm(samples, desc=desc, unit="img", leave=False):
        try:
            images.append(load_model_input(sample.path.read_bytes(), size))
            kept.append(sample)
        except (ImageError, OSError) as e:
            log.warning("skipping %s: %s", sample.path.name, e)
            skipped.append((sample, str(e)))
    array = np.stack(images) if images else np.zeros((0, size, size, 1), np.uint8)
    labels = np.array([s.label for s in kept], dtype=np.float32)
    return ImageSet(array, labels, kept, skipped)


def augmenter(config: TrainConfig) -> keras.Sequential:
    """Small geometric and photometric changes a real acquisition could make. No flips: the heart is
    on the left and markers would read mirrored, so a flipped film is not a plausible X-ray."""
    layers = keras.layers
    fill = {"fill_mode": "constant", "fill_value": 0.0}
    return keras.Sequential(
        [
            layers.RandomRotation(config.rotation_degrees / 360.0, **fill, seed=config.seed),
            layers.RandomTranslation(config.shift_fraction, config.shift_fraction, **fill, seed=config.seed),
            layers.RandomZoom(config.zoom_fraction, **fill, seed=config.seed),
            layers.RandomBrightness(config.brightness, value_range=(0.0, 255.0), seed=config.seed),
            layers.RandomContrast(config.contrast, seed=config.seed),
        ],
        name="augment",
    )


def make_dataset(data: ImageSet, batch_size: int, config: TrainConfig, training: bool) -> tf.data.Dataset:
    """Shuffled and augmented for training; in order and untouched for validation."""
    ds = tf.data.Dataset.from_tensor_slices((data.images, data.labels))
    if training:
        ds = ds.shuffle(len(data.labels), seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))
    if training:
        augment = augmenter(config)
        ds = ds.map(
            lambda x, y: (tf.clip_by_value(augment(x, training=True), 0.0, 255.0), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.prefetch(tf.data.AUTOTUNE)
