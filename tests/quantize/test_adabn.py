"""AdaBN: BatchNorm statistics re-estimated on a site's films, labels unread, in place."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="AdaBN runs on the build machine, in the training environment")

from lab.tf_env import keras
from quantize.adabn import adapt_batchnorm, batchnorm_layers


def _model() -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Conv2D(3, 3, use_bias=False, kernel_initializer="ones")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    for layer in batchnorm_layers(model):
        layer.trainable = False  # as the shipped recipe leaves them
    return model


def test_the_first_layers_statistics_become_the_site_films_own():
    model = _model()
    films = np.random.default_rng(0).integers(80, 200, (96, 8, 8, 1)).astype(np.uint8)
    section = adapt_batchnorm(model, films, seed=0)
    conv_out = keras.Model(model.inputs, model.get_layer("bn1").input)(films.astype(np.float32)).numpy()
    bn1 = model.get_layer("bn1")
    assert bn1.moving_mean.numpy() == pytest.approx(conv_out.mean(axis=(0, 1, 2)), rel=1e-4)
    # the mean of per-batch variances: the total variance less the spread of the batch means
    assert bn1.moving_variance.numpy() == pytest.approx(conv_out.var(axis=(0, 1, 2)), rel=0.1)
    assert section == {"method": "adabn", "layers": 2, "films": 96, "batch_size": 32}


def test_the_layers_are_left_frozen_with_their_momentum():
    model = _model()
    adapt_batchnorm(model, np.full((64, 8, 8, 1), 120, np.uint8), seed=1)
    for layer in batchnorm_layers(model):
        assert not layer.trainable and layer.momentum == pytest.approx(0.99)


def test_too_few_films_are_refused_and_the_model_is_unchanged():
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="at least 64 films"):
        adapt_batchnorm(model, np.zeros((40, 8, 8, 1), np.uint8), seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
