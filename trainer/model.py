"""The classifier: raw gray pixels in, P(PNEUMONIA) out, normalisation inside the model.

Backbone layers sit flat in the graph (not nested) so `quantize/` can reach the last convolution
for the class activation map: head = global average pooling -> dropout -> one sigmoid unit.
"""

from __future__ import annotations

from lab.tf_env import keras
from trainer.config import ARCHITECTURES, TrainConfig
from trainer.efficientnet_lite import efficientnet_lite0

INPUT_NAME = "xray"
EMBEDDING_LAYER = "embedding"
OUTPUT_LAYER = "probability"
_HEAD_LAYERS = frozenset({EMBEDDING_LAYER, "head_dropout", OUTPUT_LAYER})


def build_model(config: TrainConfig) -> keras.Model:
    inputs = keras.Input((config.input_size, config.input_size, 1), name=INPUT_NAME)
    # Every backbone expects [-1, 1] RGB; the gray film is copied into all three channels.
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalise")(inputs)
    x = keras.layers.Concatenate(name="gray_to_rgb")([x, x, x])
    features = _backbone(config, x)
    pooled = keras.layers.GlobalAveragePooling2D(name=EMBEDDING_LAYER)(features)
    dropped = keras.layers.Dropout(config.dropout, name="head_dropout")(pooled)
    outputs = keras.layers.Dense(1, activation="sigmoid", name=OUTPUT_LAYER)(dropped)
    return keras.Model(inputs, outputs, name=f"pneumoedge_{config.architecture}")


def _backbone(config: TrainConfig, x: keras.KerasTensor) -> keras.KerasTensor:
    """The backbone's last activation on `x`, with its ImageNet weights when the config names them."""
    weights = str(config.weights) if config.weights else None
    if config.architecture == "efficientnet-lite0":
        return efficientnet_lite0(x, weights)
    application = getattr(keras.applications, ARCHITECTURES[config.architecture][0])
    backbone = application(input_tensor=x, alpha=config.alpha, include_top=False, weights=weights)
    return backbone.get_layer(config.feature_layer).output


def freeze_backbone(model: keras.Model) -> None:
    """Phase 1: only the head learns, so random head gradients cannot wreck pretrained features."""
    for layer in model.layers:
        layer.trainable = layer.name in _HEAD_LAYERS


def unfreeze_top(model: keras.Model, first_layer: str, train_batchnorm: bool = False) -> None:
    """Phase 2: unfreeze from `first_layer` up. BatchNorm stays frozen (inference mode, ImageNet
    statistics) unless `train_batchnorm`: small single-cohort batches would pull its statistics
    towards the training cohort's look."""
    names = [layer.name for layer in model.layers]
    if first_layer not in names:
        raise ValueError(f"layer {first_layer!r} is not in the model; e.g. {names[-20:]}")
    start = names.index(first_layer)
    for index, layer in enumerate(model.layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = layer.name in _HEAD_LAYERS or (index >= start and (train_batchnorm or not is_bn))


def cosine_schedule(
    peak: float, total_steps: int, warmup_steps: int
) -> keras.optimizers.schedules.CosineDecay:
    """Linear warm-up to `peak`, then cosine decay to 0 at the last step: the last epoch is the model."""
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 100.0,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=0.0,
        warmup_target=peak,
        warmup_steps=warmup_steps,
    )


def make_optimizer(
    name: str,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
    weight_decay: float = 0.0,
) -> keras.optimizers.Optimizer:
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    raise ValueError(f"optimizer {name!r} unknown; use adamw, adam, sgd or rmsprop")


def compile_model(model: keras.Model, optimizer: keras.optimizers.Optimizer, label_smoothing: float) -> None:
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing),
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
    )
