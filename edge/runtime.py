"""One small interface over the TFLite runtimes the kiosk may have installed.

Preference order: `ai_edge_litert` (the maintained runtime wheel), `tflite_runtime` (older Pi
images), then `tensorflow.lite` as a last fallback for development machines. TensorFlow is only
imported when neither light runtime exists.

Integer-quantised models run on the runtime's built-in kernels, never on its default delegate:
ai-edge-litert applies XNNPACK by default and XNNPACK's int8 kernels round differently from the
built-in ones that tflite-runtime 2.14 uses, which moved the shipped int8 bundle's probabilities by
up to 0.055 between the two runtimes (benchmarks/runtime_parity.py). Pinned, both runtimes give the
same outputs, so a clinic gets the same answer whichever device it bought. Float models keep the
runtime's default kernels (XNNPACK and the built-in float kernels agree to about 1e-6).

`TfliteModel` does the expensive work once (interpreter, tensor allocation, signature runner,
quantisation parameters); `run` takes the preprocessed uint8 image and returns float32 outputs by
signature name, quantising the input and dequantising every output with the tensors' own scale and
zero point, for int8 and uint8 tensors alike.
"""

from __future__ import annotations

import importlib
import logging
import operator
import os
import sys
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Runtime name -> (module, attribute path of its Interpreter class, distribution name for the
#: version), best first; the benchmark (quantize/latency.py) measures each by these names.
RUNTIMES: dict[str, tuple[str, str, str]] = {
    "ai-edge-litert": ("ai_edge_litert.interpreter", "Interpreter", "ai-edge-litert"),
    "tflite-runtime": ("tflite_runtime.interpreter", "Interpreter", "tflite-runtime"),
    "tf.lite": ("tensorflow", "lite.Interpreter", "tensorflow"),
}


#: Kernel choices: `auto` pins the built-in kernels for integer models and leaves float models on the
#: runtime's default; `builtin` and `default` force one or the other (benchmarks compare them).
KERNELS_AUTO = "auto"
KERNELS_BUILTIN = "builtin"
KERNELS_DEFAULT = "default"
KERNEL_CHOICES = (KERNELS_AUTO, KERNELS_BUILTIN, KERNELS_DEFAULT)


class RuntimeUnavailableError(RuntimeError):
    """No TFLite runtime is installed."""


@dataclass(frozen=True)
class _Quantisation:
    """How a tensor maps to real values: real = scale * (q - zero_point); scale 0 means not quantised."""

    dtype: np.dtype
    scale: float
    zero_point: int

    @classmethod
    def of(cls, details: dict[str, Any]) -> _Quantisation:
        scale, zero_point = details.get("quantization", (0.0, 0))
        return cls(np.dtype(details["dtype"]), float(scale), int(zero_point))

    @property
    def quantised(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(self.dtype, np.integer)

    def quantise(self, real: np.ndarray) -> np.ndarray:
        if not self.quantised:
            return real.astype(self.dtype)
        info = np.iinfo(self.dtype)
        q = np.rint(real.astype(np.float64) / self.scale + self.zero_point)
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantise(self, q: np.ndarray) -> np.ndarray:
        if not self.quantised:
            return q.astype(np.float32)
        return ((q.astype(np.float32) - self.zero_point) * self.scale).astype(np.float32)


def quantise_input(real: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    """Real values in an input tensor's dtype and quantisation (its interpreter `details`)."""
    return _Quantisation.of(details).quantise(real)


def load_interpreter_class(
    preferred: tuple[tuple[str, str, str], ...] = tuple(RUNTIMES.values()),
) -> tuple[type, str]:
    """The first importable Interpreter class and a name like 'ai-edge-litert 2.3.0'."""
    tried = []
    for module_name, attribute, distribution in preferred:
        if module_name == "tensorflow":
            os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        try:
            interpreter_class = operator.attrgetter(attribute)(importlib.import_module(module_name))
        except (ImportError, AttributeError):
            tried.append(f"{module_name}.{attribute}")
            continue
        try:
            version = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            version = "unknown"
        return interpreter_class, f"{distribution} {version}"
    raise RuntimeUnavailableError(
        f"no TFLite runtime found (tried {', '.join(tried)}); install one: pip install ai-edge-litert"
    )


def _check_kernels(kernels: str) -> None:
    if kernels not in KERNEL_CHOICES:
        raise ValueError(f"kernels must be one of {', '.join(KERNEL_CHOICES)}, got {kernels!r}")


def _has_integer_tensors(interpreter: Any) -> bool:
    return any(np.dtype(t["dtype"]) in (np.int8, np.uint8) for t in interpreter.get_tensor_details())


def open_interpreter(
    interpreter_class: type,
    model_path: Path | str,
    num_threads: int | None = None,
    kernels: str = KERNELS_AUTO,
) -> tuple[Any, str]:
    """An interpreter for `model_path` and the kernels it runs on (`builtin` or `default`)."""
    _check_kernels(kernels)
    if kernels != KERNELS_DEFAULT:
        resolver = sys.modules[interpreter_class.__module__].OpResolverType
        interpreter = interpreter_class(
            model_path=str(model_path),
            num_threads=num_threads,
            experimental_op_resolver_type=resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        if kernels == KERNELS_BUILTIN or _has_integer_tensors(interpreter):
            return interpreter, KERNELS_BUILTIN
    return interpreter_class(model_path=str(model_path), num_threads=num_threads), KERNELS_DEFAULT


class TfliteModel:
    """A loaded TFLite model with one serving signature; `run` is safe to call from several threads."""

    def __init__(
        self, model_path: Path | str, num_threads: int | None = None, kernels: str = KERNELS_AUTO
    ) -> None:
        _check_kernels(kernels)
        interpreter_class, self.runtime_name = load_interpreter_class()
        self.model_path = Path(model_path)
        self.num_threads = num_threads
        try:
            self._interpreter, self.kernels = open_interpreter(
                interpreter_class, self.model_path, num_threads, kernels
            )
        except (ValueError, RuntimeError) as e:
            raise ValueError(f"{self.model_path} is not a loadable TFLite model: {e}") from e
        signatures = self._interpreter.get_signature_list()
        if len(signatures) != 1:
            raise ValueError(
                f"{self.model_path} must have exactly one signature, it has {sorted(signatures) or 'none'}"
            )
        self.signature_key = next(iter(signatures))
        self._runner = self._interpreter.get_signature_runner(self.signature_key)
        inputs = self._runner.get_input_details()
        if len(inputs) != 1:
            raise ValueError(f"{self.model_path} must take one input, it takes {sorted(inputs)}")
        self.input_name, input_details = next(iter(inputs.items()))
        self.input_shape = tuple(int(d) for d in input_details["shape"])
        self._input_quant = _Quantisation.of(input_details)
        output_details = self._runner.get_output_details()
        self.output_shapes = {
            name: tuple(int(d) for d in details["shape"]) for name, details in output_details.items()
        }
        self._output_quant = {name: _Quantisation.of(details) for name, details in output_details.items()}
        for name, quant in [(self.input_name, self._input_quant), *self._output_quant.items()]:
            if quant.dtype in (np.int8, np.uint8) and not quant.quantised:
                raise ValueError(
                    f"{self.model_path}: tensor {name!r} is {quant.dtype} without per-tensor scale and "
                    "zero point; export inputs and outputs with per-tensor quantisation"
                )
        self._lock = threading.Lock()
        log.info(
            "loaded %s with %s (%s kernels): input %s %s, outputs %s",
            self.model_path.name,
            self.runtime_name,
            self.kernels,
            self.input_shape,
            self._input_quant.dtype,
            sorted(self._output_quant),
        )

    @property
    def input_dtype(self) -> np.dtype:
        return self._input_quant.dtype

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(sorted(self._output_quant))

    def run(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Run one uint8 image (H, W, C) of raw pixels; float32 outputs keyed by signature name."""
        expected = self.input_shape[1:]
        if image.dtype != np.uint8 or image.shape != expected:
            raise ValueError(f"expected a uint8 image of shape {expected}, got {image.dtype} {image.shape}")
        tensor = self._input_quant.quantise(image[np.newaxis].astype(np.float32))
        with self._lock:
            raw = self._runner(**{self.input_name: tensor})
        return {name: self._output_quant[name].dequantise(value) for name, value in raw.items()}
