"""The serving signature every bundle's model has: outputs named probability, cam and embedding.

A plain `TFLiteConverter.from_keras_model` would name the outputs after Keras layers. Following the
recipe in docs/bundle-format.md, the model is wrapped in a `tf.function` returning a dict, so the one
TFLite signature's outputs carry exactly the dict's keys. Shapes are read from the model, not assumed:
the cam is the feature layer's (h, w) grid and the embedding has its channel count.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.bundle import OUTPUT_CAM, OUTPUT_EMBEDDING, OUTPUT_FEATURES, OUTPUT_PROBABILITY
from lab.tf_env import keras, tf

INPUT_NAME = "image"
HEAD_LAYER = "probability"


@dataclass(frozen=True)
class SignatureShapes:
    """What the exported signature takes and returns, for the bundle's input and output contracts."""

    input_size: int
    channels: int
    cam: tuple[int, int]
    embedding: int

    def outputs(self, labels: list[str]) -> dict[str, dict[str, object]]:
        return {
            OUTPUT_PROBABILITY: {"shape": [1, 1], "meaning": f"P({labels[1]}), after the sigmoid"},
            OUTPUT_CAM: {
                "shape": [1, *self.cam],
                "meaning": "class activation map: last-conv features . head kernel + bias (logit units)",
            },
            OUTPUT_EMBEDDING: {
                "shape": [1, self.embedding],
                "meaning": "global-average-pooled last-conv features, for the ood gate",
            },
            OUTPUT_FEATURES: {
                "shape": [1, *self.cam, self.embedding],
                "meaning": "last-conv features: the kiosk's cam is features . the bundle's head (+ bias)",
            },
        }


def head_layer(model: keras.Model, name: str = HEAD_LAYER) -> keras.layers.Dense:
    """The one-unit sigmoid Dense head whose weights turn features into the cam."""
    try:
        head = model.get_layer(name)
    except ValueError as e:
        raise ValueError(f"the model has no layer {name!r}; was it trained by trainer/?") from e
    if not isinstance(head, keras.layers.Dense) or head.units != 1:
        raise ValueError(f"layer {name!r} must be a Dense layer with one unit, got {head}")
    return head


def shapes_of(model: keras.Model, feature_layer: str) -> SignatureShapes:
    _, height, width, channels = model.inputs[0].shape
    if height != width:
        raise ValueError(f"the model input must be square, got {height}x{width}")
    _, fh, fw, fc = model.get_layer(feature_layer).output.shape
    return SignatureShapes(int(height), int(channels), (int(fh), int(fw)), int(fc))


def serving_function(model: keras.Model, feature_layer: str, head_name: str = HEAD_LAYER):
    """A concrete function: image float32 (1, s, s, c) raw 0..255 -> {probability, cam, embedding, features}.

    `model` maps raw pixels to P(PNEUMONIA) through `feature_layer` (B, h, w, C), its global average
    and the one-unit sigmoid Dense `head_name`; the cam's mean over (h, w) is then the logit.
    """
    shapes = shapes_of(model, feature_layer)
    head = head_layer(model, head_name)
    trunk = keras.Model(model.inputs, [model.get_layer(feature_layer).output, model.outputs[0]])
    spec = tf.TensorSpec([1, shapes.input_size, shapes.input_size, shapes.channels], tf.float32, INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(image):
        feature_map, probability = trunk(image, training=False)
        cam = tf.einsum("bhwc,c->bhw", feature_map, head.kernel[:, 0]) + head.bias[0]
        embedding = tf.reduce_mean(feature_map, axis=[1, 2])
        return {
            OUTPUT_PROBABILITY: probability,
            OUTPUT_CAM: cam,
            OUTPUT_EMBEDDING: embedding,
            OUTPUT_FEATURES: feature_map,
        }

    return serve.get_concrete_function()
