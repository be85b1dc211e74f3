"""Magnitude pruning with tensorflow-model-optimization, a short fine-tune, then the plain model back.

Pruned: every Conv2D and Dense layer with at least `min_weights` kernel weights (the 1x1
expand/project convolutions of the later blocks hold almost all MobileNet weights). Not pruned: the
small early convolutions and the Dense head (about 2% of the weights, but everything flows through
them), depthwise convolutions (each is a whole channel's only filter), BatchNorm, and layers tfmot
cannot prune (Rescaling, Concatenate). Sparsity ramps from 0 to the target over the first half of the
fine-tune steps (PolynomialDecay), so the second half lets the surviving weights recover.
BatchNorm stays in inference mode, as in the trainer's fine-tuning.
The fine-tune uses the training subset with the run's class weights and no augmentation.
"""

from __future__ import annotations

import logging

import numpy as np
import tensorflow_model_optimization as tfmot

from lab.tf_env import keras, tf
from quantize.settings import PruneSettings

log = logging.getLogger(__name__)

RAMP_SHARE = 0.5  # share of fine-tune steps over which sparsity ramps up to the target


def is_prunable(layer: keras.layers.Layer, min_weights: int = 0) -> bool:
    """Conv2D and Dense with >= min_weights kernel weights; DepthwiseConv2D (a Conv2D subclass) is not."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return False
    if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
        return False
    return int(np.prod(layer.kernel.shape)) >= min_weights


def prune(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    class_weights: dict[int, float],
    settings: PruneSettings,
) -> keras.Model:
    """Prune and fine-tune on uint8 images (n, s, s, c) with 0/1 labels; returns the stripped model.

    `class_weights`: the ones the run trained with (run.json), so the fine-tune weighs the classes
    as training did.
    """
    keras.utils.set_random_seed(settings.seed)
    steps = int(np.ceil(len(images) / settings.batch_size)) * settings.epochs
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=settings.sparsity,
        begin_step=0,
        end_step=max(1, int(steps * RAMP_SHARE)),
        frequency=max(1, steps // 20),
    )

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if is_prunable(layer, settings.min_weights):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer.__class__.from_config(layer.get_config())  # a copy: sharing would tangle the graphs

    wrapped = keras.models.clone_model(model, clone_function=wrap)
    _copy_weights(model, wrapped)
    for layer in wrapped.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    wrapped.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.AUC(name="auc")],
    )
    data = (
        tf.data.Dataset.from_tensor_slices((images, labels.astype(np.float32)))
        .shuffle(len(images), seed=settings.seed)
        .batch(settings.batch_size)
        .map(lambda x, y: (tf.cast(x, tf.float32), y))
        .prefetch(tf.data.AUTOTUNE)
    )
    log.info(
        "pruning to %.0f%% sparsity over %d steps (%d epochs, lr %g)",
        100 * settings.sparsity,
        steps,
        settings.epochs,
        settings.learning_rate,
    )
    wrapped.fit(
        data,
        epochs=settings.epochs,
        class_weight=class_weights,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), _epoch_log()],
        verbose=0,
    )
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    # strip_pruning reuses the unwrapped layer objects, so their `.output` still points into the
    # wrapped graph; a fresh clone gives a model whose layers belong to it alone.
    fresh = keras.models.clone_model(stripped)
    fresh.set_weights(stripped.get_weights())
    return fresh


def _epoch_log() -> keras.callbacks.Callback:
    def log_epoch(epoch: int, logs: dict[str, float] | None) -> None:
        log.info(
            "pruning epoch %d: %s", epoch + 1, ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
        )

    return keras.callbacks.LambdaCallback(on_epoch_end=log_epoch)


def _copy_weights(original: keras.Model, wrapped: keras.Model) -> None:
    """clone_model gives fresh weights; copy the trained ones layer by layer into the wrapped layers."""
    for source, target in zip(original.layers, wrapped.layers, strict=True):
        inner = target.layer if isinstance(target, keras.layers.Wrapper) else target
        inner.set_weights(source.get_weights())


def measured_sparsity(model: keras.Model, min_weights: int) -> dict[str, float | int]:
    """Zero share of the pruned layers' kernels, and of every weight in the model, from the weights."""
    pruned_zeros = pruned_total = 0
    for layer in model.layers:
        if is_prunable(layer, min_weights):
            kernel = layer.kernel.numpy()
            pruned_zeros += int((kernel == 0).sum())
            pruned_total += kernel.size
    all_weights = [w for w in model.get_weights() if w.size]
    zeros = sum(int((w == 0).sum()) for w in all_weights)
    total = sum(w.size for w in all_weights)
    return {
        "pruned_kernels": pruned_zeros / pruned_total if pruned_total else 0.0,
        "all_weights": zeros / total if total else 0.0,
        "pruned_parameters": pruned_total,
        "total_parameters": total,
    }
