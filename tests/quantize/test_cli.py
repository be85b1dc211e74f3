"""The export command line: option checking and messages."""

from __future__ import annotations

import pytest

from quantize.__main__ import main
from quantize.settings import ExportSettings, PruneSettings


def test_unknown_variant_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="choose from float32, int8, pruned-int8"):
        ExportSettings(variants=("int4",))


@pytest.mark.parametrize("sparsity", [0.0, 1.0, 1.5])
def test_sparsity_outside_zero_one_is_refused(sparsity):
    with pytest.raises(ValueError, match="sparsity must be in"):
        PruneSettings(sparsity=sparsity)


def test_only_conv_and_dense_layers_with_enough_weights_are_pruned():
    from lab.tf_env import keras
    from quantize.prune import is_prunable

    inputs = keras.Input((16, 16, 4))
    small = keras.layers.Conv2D(2, 1)
    big = keras.layers.Conv2D(64, 3)
    depthwise = keras.layers.DepthwiseConv2D(3, depth_multiplier=64)
    for layer in (small, big, depthwise):
        layer(inputs)
    assert not is_prunable(small, min_weights=100)  # 8 weights
    assert is_prunable(big, min_weights=100)  # 2304 weights
    assert not is_prunable(depthwise, min_weights=0)
    assert not is_prunable(keras.layers.Rescaling(0.5))


def test_export_of_a_missing_run_says_why_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"^export: .*is not a finished training run"):
        main(["export", "--run", str(tmp_path / "nope"), "--out", str(tmp_path / "m" / "x")])
    assert not (tmp_path / "m").exists()
