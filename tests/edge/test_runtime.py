"""The TFLite runtime wrapper on real tiny models: names, dtypes, quantisation, kernels, agreement.

Runtime-agnostic: these run under whichever runtime is installed (ai-edge-litert in the kiosk's
environment, tflite-runtime 2.14 in the 32-bit Pi one, both beside TensorFlow in the training one).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from edge.bundle import OUTPUT_CAM, OUTPUT_EMBEDDING, OUTPUT_FEATURES, OUTPUT_PROBABILITY
from edge.preprocess import load_model_input
from edge.runtime import (
    KERNELS_BUILTIN,
    KERNELS_DEFAULT,
    RUNTIMES,
    RuntimeUnavailableError,
    TfliteModel,
    _Quantisation,
    load_interpreter_class,
)
from lab.synthetic import xray_bytes

OUTPUTS = (OUTPUT_CAM, OUTPUT_EMBEDDING, OUTPUT_FEATURES, OUTPUT_PROBABILITY)


def test_signature_outputs_keep_their_names(tiny_bundle_int8, tiny_bundle_float):
    for bundle in (tiny_bundle_int8, tiny_bundle_float):
        assert TfliteModel(bundle.model_path).output_names == OUTPUTS


def test_int8_model_takes_raw_uint8_pixels(tiny_bundle_int8):
    model = TfliteModel(tiny_bundle_int8.model_path)
    assert model.input_dtype == np.uint8
    assert model._input_quant.scale == pytest.approx(1.0)
    assert model._input_quant.zero_point == 0


def test_outputs_are_dequantised_float32_of_the_right_shape(tiny_bundle_int8):
    outputs = TfliteModel(tiny_bundle_int8.model_path).run(load_model_input(xray_bytes(1), 224))
    assert {name: out.shape for name, out in outputs.items()} == {
        OUTPUT_CAM: (1, 7, 7),
        OUTPUT_EMBEDDING: (1, 16),
        OUTPUT_FEATURES: (1, 7, 7, 16),
        OUTPUT_PROBABILITY: (1, 1),
    }
    assert all(out.dtype == np.float32 for out in outputs.values())
    assert 0.0 <= float(outputs[OUTPUT_PROBABILITY][0, 0]) <= 1.0


def test_float_and_int8_models_agree(tiny_bundle_int8, tiny_bundle_float):
    int8 = TfliteModel(tiny_bundle_int8.model_path)
    float32 = TfliteModel(tiny_bundle_float.model_path)
    for seed in range(4):
        image = load_model_input(xray_bytes(seed, width=600, height=700), 224)
        a, b = int8.run(image), float32.run(image)
        assert a[OUTPUT_PROBABILITY][0, 0] == pytest.approx(b[OUTPUT_PROBABILITY][0, 0], abs=0.02)
        cam_range = float(np.ptp(b[OUTPUT_CAM]))
        assert np.abs(a[OUTPUT_CAM] - b[OUTPUT_CAM]).max() < 0.1 * cam_range
        assert np.corrcoef(a[OUTPUT_EMBEDDING][0], b[OUTPUT_EMBEDDING][0])[0, 1] > 0.98


def test_wrong_input_shape_or_dtype_is_refused(tiny_bundle_int8):
    model = TfliteModel(tiny_bundle_int8.model_path)
    with pytest.raises(ValueError, match=r"uint8 image of shape \(224, 224, 1\)"):
        model.run(np.zeros((224, 224), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        model.run(np.zeros((224, 224, 1), dtype=np.float32))


def test_not_a_model_is_refused(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"definitely not flatbuffers" * 10)
    with pytest.raises(ValueError, match="not a loadable TFLite model"):
        TfliteModel(path)


def test_concurrent_runs_give_the_same_answers(tiny_bundle_int8):
    model = TfliteModel(tiny_bundle_int8.model_path, num_threads=1)
    images = [load_model_input(xray_bytes(seed, width=300, height=360), 224) for seed in range(4)]
    expected = [model.run(image)[OUTPUT_CAM] for image in images]
    results: dict[int, list[np.ndarray]] = {}

    def work(worker: int) -> None:
        results[worker] = [model.run(images[(worker + k) % 4])[OUTPUT_CAM] for k in range(8)]

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for worker, cams in results.items():
        for k, cam in enumerate(cams):
            np.testing.assert_array_equal(cam, expected[(worker + k) % 4])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_quantisation_round_trips_for_both_integer_types(dtype):
    quant = _Quantisation(np.dtype(dtype), scale=0.5, zero_point=3 if dtype == np.uint8 else -5)
    real = np.array([-1.0, 0.0, 1.5, 20.0], dtype=np.float32)
    np.testing.assert_allclose(quant.dequantise(quant.quantise(real)), real)


def test_quantisation_of_int8_and_uint8_tensors_is_read(tiny_bundle_int8):
    model = TfliteModel(tiny_bundle_int8.model_path)
    assert model._input_quant.dtype == np.uint8
    assert {q.dtype for q in model._output_quant.values()} == {np.dtype(np.int8)}
    assert all(q.quantised for q in model._output_quant.values())


def test_quantisation_saturates_instead_of_wrapping():
    quant = _Quantisation(np.dtype(np.int8), scale=1.0, zero_point=0)
    assert quant.quantise(np.array([300.0, -300.0])).tolist() == [127, -128]


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module.split(".")[0]) is not None


def test_preferred_runtime_is_the_lightest_installed():
    installed = [distribution for module, _, distribution in RUNTIMES.values() if _installed(module)]
    _, name = load_interpreter_class()
    assert name.rsplit(" ", 1)[0] == installed[0]


def test_integer_models_run_on_the_builtin_kernels(tiny_bundle_int8, tiny_bundle_float):
    """XNNPACK's int8 kernels round differently from the built-in ones: pinned, the runtimes agree."""
    assert TfliteModel(tiny_bundle_int8.model_path).kernels == KERNELS_BUILTIN
    assert TfliteModel(tiny_bundle_float.model_path).kernels == KERNELS_DEFAULT


def test_kernels_can_be_forced_and_agree_on_float(tiny_bundle_float):
    image = load_model_input(xray_bytes(5, width=400, height=480), 224)
    builtin = TfliteModel(tiny_bundle_float.model_path, kernels=KERNELS_BUILTIN)
    default = TfliteModel(tiny_bundle_float.model_path, kernels=KERNELS_DEFAULT)
    assert (builtin.kernels, default.kernels) == (KERNELS_BUILTIN, KERNELS_DEFAULT)
    a, b = builtin.run(image), default.run(image)
    for name in OUTPUTS:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-5)


def test_unknown_kernels_are_refused(tiny_bundle_int8):
    with pytest.raises(ValueError, match="kernels must be one of auto, builtin, default, got 'fast'"):
        TfliteModel(tiny_bundle_int8.model_path, kernels="fast")


def test_missing_runtimes_give_an_install_hint():
    with pytest.raises(RuntimeUnavailableError, match="pip install ai-edge-litert"):
        load_interpreter_class((("no_such_runtime.interpreter", "Interpreter", "no-such-runtime"),))


@pytest.mark.slow
@pytest.mark.skipif(
    not _installed("tensorflow"), reason="TensorFlow is not installed (the kiosk's environment)"
)
def test_tensorflow_is_the_last_fallback(tiny_bundle_int8):
    """Hide both light runtimes in a fresh interpreter: the model must still run, through tf.lite."""
    code = (
        "import sys; sys.modules['ai_edge_litert'] = None; sys.modules['tflite_runtime'] = None\n"
        "import numpy as np; from edge.runtime import TfliteModel\n"
        f"model = TfliteModel({str(tiny_bundle_int8.model_path)!r})\n"
        "out = model.run(np.zeros((224, 224, 1), np.uint8))\n"
        "print(model.runtime_name, model.kernels, sorted(out))"
    )
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, timeout=300, check=True
    )
    assert done.stdout.strip().splitlines()[-1].startswith("tensorflow 2.")
    assert " builtin " in done.stdout
    assert "['cam', 'embedding', 'features', 'probability']" in done.stdout


def test_quantise_input_is_the_interpreters_own_rule() -> None:
    """The benchmark's timing inputs go through the same quantisation as TfliteModel.run."""
    from edge.runtime import quantise_input

    int8 = {"dtype": np.int8, "quantization": (0.5, -5)}
    assert quantise_input(np.array([0.0, 10.0, -100.0, 80.0]), int8).tolist() == [-5, 15, -128, 127]
    real = np.array([0.25, 254.0], dtype=np.float32)
    floating = quantise_input(real, {"dtype": np.float32, "quantization": (0.0, 0)})
    assert floating.dtype == np.float32 and floating.tolist() == real.tolist()
