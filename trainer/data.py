"""From a Kermany folder to augmented tf.data batches, through the edge's own preprocessing."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.intensity import NONE, standardise_all
from edge.kermany import Sample, drop_duplicates, scan_split
from edge.preprocess import ImageError, load_model_input
from lab.tf_env import tf
from trainer import acquisition
from trainer.config import TrainConfig

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


def load_images(
    samples: Sequence[Sample], size: int, desc: str = "decoding", intensity: str = NONE
) -> ImageSet:
    """Decode every file with `edge.preprocess`; a broken file is logged and skipped.

    Training films are loaded with intensity `none`: their standardisation follows the augmentation.
    """
    images, kept, skipped = [], [], []
    for sample in tqdm(samples, desc=desc, unit="img", leave=False):
        try:
            images.append(load_model_input(sample.path.read_bytes(), size, intensity))
            kept.append(sample)
        except (ImageError, OSError) as e:
            log.warning("skipping %s: %s", sample.path.name, e)
            skipped.append((sample, str(e)))
    array = np.stack(images) if images else np.zeros((0, size, size, 1), np.uint8)
    labels = np.array([s.label for s in kept], dtype=np.float32)
    return ImageSet(array, labels, kept, skipped)


def augment_ranges(config: TrainConfig) -> acquisition.AugmentRanges:
    return acquisition.AugmentRanges(
        rotation_degrees=config.rotation_degrees,
        shift_fraction=config.shift_fraction,
        zoom_fraction=config.zoom_fraction,
        brightness=config.brightness,
        contrast=config.contrast,
        acquisition=config.acquisition,
    )


def training_dataset(
    data: ImageSet, config: TrainConfig, class_weights: dict[int, float]
) -> tuple[tf.data.Dataset, int]:
    """Endless shuffled (film, label, weight) batches from one augmented copy of every film per epoch.

    The class weight travels with each film as its sample weight (Keras' `class_weight` would truncate
    a mixed label such as 0.8 to class 0). No flips: the heart is on the left and markers would read
    mirrored, so a flipped film is not a plausible X-ray.
    """
    copies = config.head_epochs + config.fine_tune_epochs
    log.info("augmenting %d copies of %d films", copies, len(data.labels))
    pool = acquisition.augmented_copies(data.images, copies, augment_ranges(config), config.seed)
    pool = standardise_all(pool, config.intensity)
    labels = np.tile(data.labels, copies)
    weights = np.array([class_weights[int(y)] for y in labels], dtype=np.float32)
    ds = tf.data.Dataset.from_tensor_slices((pool, labels, weights))
    ds = ds.shuffle(len(labels), seed=config.seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(lambda x, y, w: (tf.cast(x, tf.float32), y, w)).batch(config.batch_size)
    if config.mixup > 0:
        ds = ds.map(mixup(config.mixup, config.seed))
    return ds.prefetch(tf.data.AUTOTUNE), math.ceil(len(data.labels) / config.batch_size)


def mixup(alpha: float, seed: int) -> Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple]:
    """Blend each film of a batch with another of the same batch (Zhang et al. 2018, mixup).

    The blend weight is the larger of b and 1 - b, b ~ Beta(alpha, alpha), so every film stays mostly
    itself; labels and class weights are blended with the same weight.
    """
    rng = tf.random.Generator.from_seed(seed)

    def blend(x: tf.Tensor, y: tf.Tensor, w: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        n = tf.shape(y)[0]
        first = tf.random.stateless_gamma([n], rng.make_seeds(1)[:, 0], alpha)
        second = tf.random.stateless_gamma([n], rng.make_seeds(1)[:, 0], alpha)
        lam = tf.maximum(first, second) / (first + second)
        partner = tf.argsort(rng.uniform([n]))

        def mix(values: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
            return weight * values + (1.0 - weight) * tf.gather(values, partner)

        return mix(x, lam[:, None, None, None]), mix(y, lam), mix(w, lam)

    return blend


def evaluation_dataset(data: ImageSet, batch_size: int = 64) -> tf.data.Dataset:
    """In order and untouched."""
    ds = tf.data.Dataset.from_tensor_slices((data.images, data.labels))
    return ds.map(lambda x, y: (tf.cast(x, tf.float32), y)).batch(batch_size).prefetch(tf.data.AUTOTUNE)
