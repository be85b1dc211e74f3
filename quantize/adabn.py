"""Label-free site adaptation: re-estimate every BatchNorm layer's statistics on a site's films (AdaBN).

The shipped recipe keeps BatchNorm frozen with its ImageNet statistics. A new cohort's films reach
each layer with other means and variances; AdaBN (Li et al., 2016) replaces each layer's running
mean and variance with those of the site's films, so every later layer sees inputs normalised the
way it saw them in training. No label is read. It runs on the build machine before export, since
TFLite folds BatchNorm into the convolutions; the head must then be refitted on the adapted
embeddings (`python -m edge calibrate`), because it was trained on the unadapted ones.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from lab.tf_env import keras

log = logging.getLogger(__name__)

BATCH_SIZE = 32


def batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def adapt_batchnorm(
    model: keras.Model, images: np.ndarray, seed: int, batch_size: int = BATCH_SIZE
) -> dict[str, Any]:
    """Overwrite the BatchNorm statistics of `model` in place with their average over `images`.

    Each batch runs in training mode, so every layer normalises with the batch's own statistics
    while the layers after it are measured (the adapted network, not the old one, feeds them);
    momentum k / (k + 1) at batch k makes the running values the plain mean over batches.
    """
    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError("the model has no BatchNormalization layer to adapt")
    if len(images) < 2 * batch_size:
        raise ValueError(f"AdaBN needs at least {2 * batch_size} films, got {len(images)}")
    saved = [(layer.trainable, layer.momentum) for layer in layers]
    order = np.random.default_rng(seed).permutation(len(images))
    batches = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    try:
        for layer in layers:
            layer.trainable = True  # a frozen Keras BatchNorm ignores training=True
        for k, rows in enumerate(batches):
            for layer in layers:
                layer.momentum = k / (k + 1)
            model(images[rows].astype(np.float32), training=True)
    finally:
        for layer, (trainable, momentum) in zip(layers, saved, strict=True):
            layer.trainable, layer.momentum = trainable, momentum
    films = len(batches) * batch_size
    log.info("AdaBN: %d BatchNorm layers re-estimated on %d films", len(layers), films)
    return {"method": "adabn", "layers": len(layers), "films": films, "batch_size": batch_size}
