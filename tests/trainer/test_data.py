"""Training batches: class weights travel with each film; mixup blends films, labels and weights alike."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.config import TrainConfig
from trainer.data import ImageSet, training_dataset

WEIGHTS = {0: 2.0, 1: 0.5}


def _films(n: int = 16) -> ImageSet:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 1), dtype=np.uint8)
    return ImageSet(images, np.r_[np.zeros(n // 2), np.ones(n // 2)].astype(np.float32), [], [])


def _config(mixup: float) -> TrainConfig:
    no_augmentation = {"rotation_degrees": 0.0, "shift_fraction": 0.0, "zoom_fraction": 0.0}
    return TrainConfig(
        input_size=32, batch_size=16, head_epochs=1, fine_tune_epochs=0, acquisition=False,
        brightness=0.0, contrast=0.0, mixup=mixup, **no_augmentation,
    )  # fmt: skip


def _first_batch(mixup: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ds, steps = training_dataset(_films(), _config(mixup), WEIGHTS)
    assert steps == 1
    x, y, w = next(iter(ds))
    return x.numpy(), y.numpy(), w.numpy()


def test_each_film_carries_its_class_weight() -> None:
    _, y, w = _first_batch(0.0)
    assert set(y.tolist()) == {0.0, 1.0}
    assert np.array_equal(w, np.where(y == 1.0, WEIGHTS[1], WEIGHTS[0]))


def test_mixup_blends_labels_and_weights_with_the_same_weight() -> None:
    _, y, w = _first_batch(0.4)
    assert np.any((y > 0.0) & (y < 1.0)), "no film was blended with one of the other class"
    assert np.allclose(w, WEIGHTS[0] + y * (WEIGHTS[1] - WEIGHTS[0]), atol=1e-6)


def test_mixup_keeps_every_film_mostly_itself() -> None:
    films = _films()
    x, y, _ = _first_batch(0.4)
    flat = films.images.reshape(len(films.labels), -1).astype(np.float64)
    for mixed, label in zip(x.reshape(len(y), -1), y, strict=True):
        # the film it came from is the nearest original; its label is the nearer of 0 and 1
        own = int(np.argmin(np.abs(flat - mixed).sum(axis=1)))
        assert abs(label - films.labels[own]) <= 0.5 + 1e-6


def test_mixup_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="mixup must be >= 0"):
        TrainConfig(mixup=-0.1)
