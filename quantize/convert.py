"""Keras model -> TFLite bytes: plain float32, or full-integer int8 with a uint8 raw-pixel input."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from lab.tf_env import keras, tf
from quantize.signature import serving_function

log = logging.getLogger(__name__)


def ramp(size: int, channels: int = 1) -> np.ndarray:
    """A 0..255 ramp image, float32 (1, size, size, channels).

    The converter sets the uint8 input's scale from the calibration pixels' range; leading with the
    full range makes the input scale 1 / zero point 0 (the tensor is the raw pixels), so bright clinic
    pixels are never clipped.
    """
    values = np.linspace(0.0, 255.0, size * size * channels, dtype=np.float32)
    return values.reshape(1, size, size, channels)


def _representative(images: np.ndarray) -> Iterator[list[np.ndarray]]:
    size, channels = images.shape[1], images.shape[3]
    yield [ramp(size, channels)]
    for image in images:
        yield [image[np.newaxis].astype(np.float32)]


def to_tflite(model: keras.Model, feature_layer: str, integer: bool, calibration: np.ndarray | None) -> bytes:
    """Convert with the serving signature; `integer` needs uint8 calibration images (n, s, s, c)."""
    concrete = serving_function(model, feature_layer)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    if integer:
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8 conversion needs calibration images from the training subset")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _representative(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.int8
        log.info("converting to full-integer int8, calibrated on %d training images", len(calibration))
    else:
        log.info("converting to float32")
    return converter.convert()
