"""Training augmentation: reproducible, shape-keeping, and really varied."""

from __future__ import annotations

import numpy as np

from lab.synthetic import synthetic_xray
from trainer.acquisition import AugmentRanges, augment, augmented_copies


def _images(count: int) -> np.ndarray:
    return np.stack([synthetic_xray(seed=s, width=64, height=64)[..., None] for s in range(count)])


def test_copies_are_reproducible_and_keep_shape():
    images = _images(5)
    a = augmented_copies(images, copies=3, ranges=AugmentRanges(), seed=7)
    b = augmented_copies(images, copies=3, ranges=AugmentRanges(), seed=7)
    assert a.shape == (15, 64, 64, 1) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a[:5], a[5:10])  # each epoch's copy differs


def test_without_acquisition_only_position_and_exposure_change():
    film = _images(1)[0, ..., 0]
    rng = np.random.default_rng(0)
    still = AugmentRanges(rotation_degrees=0, shift_fraction=0, zoom_fraction=0, brightness=0, contrast=0,
                          acquisition=False)  # fmt: skip
    assert np.abs(augment(film, still, rng).astype(int) - film).max() <= 1


def test_acquisition_changes_the_film_beyond_geometry():
    film = _images(1)[0, ..., 0]
    geometry_free = AugmentRanges(rotation_degrees=0, shift_fraction=0, zoom_fraction=0, brightness=0,
                                  contrast=0, p=1.0)  # fmt: skip
    rng = np.random.default_rng(1)
    changed = [np.abs(augment(film, geometry_free, rng).astype(int) - film).mean() for _ in range(5)]
    assert min(changed) > 0.5
