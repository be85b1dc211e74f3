"""Read a PyTorch state dict saved in torch's legacy (pre-1.6) file format into numpy arrays.

The second ImageNet backbone (EfficientNet-Lite0) is published only as such a file inside a PyPI wheel.
PyTorch itself would add about 1 GB to the training environment to read 19 MB, so this reads the
documented layout directly: three pickles (magic number, protocol, system info), the state dict
pickled with storages as persistent ids, the list of storage keys, then each storage's raw bytes.
"""

from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ByteStorage": np.uint8,
}


class _Storage:
    def __init__(self, kind: str) -> None:
        if kind not in _DTYPES:
            raise ValueError(f"torch storage type {kind} is not supported")
        self.dtype = np.dtype(_DTYPES[kind])


class _TensorRef(tuple):
    """(storage key, offset, size, stride): resolved once the storages have been read."""


def _rebuild_tensor_v2(storage: str, offset: int, size: Any, stride: Any, *_: Any) -> _TensorRef:
    return _TensorRef((storage, offset, tuple(size), tuple(stride)))


class _Unpickler(pickle.Unpickler):
    """Allows only what a state dict of tensors needs; anything else in the file is refused."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file)
        self.storage_types: dict[str, np.dtype] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name.endswith("Storage"):
            return lambda: _Storage(name)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")

    def persistent_load(self, pid: Any) -> str:
        _, storage_type, key, _location, _size, _view = pid
        kind = storage_type() if callable(storage_type) else storage_type
        self.storage_types[key] = kind.dtype
        return key


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Tensor name -> array, in the file's order."""
    with path.open("rb") as f:
        if _Unpickler(f).load() != _MAGIC:
            raise ValueError(f"{path} is not a legacy torch file (a zip-format file needs torch itself)")
        _Unpickler(f).load()  # protocol version
        _Unpickler(f).load()  # system info
        unpickler = _Unpickler(f)
        state = unpickler.load()
        keys = _Unpickler(f).load()
        storages = {key: _read_storage(f, unpickler.storage_types[key]) for key in keys}
    return {name: _resolve(ref, storages) for name, ref in state.items()}


def _read_storage(f: BinaryIO, dtype: np.dtype) -> np.ndarray:
    (count,) = struct.unpack("<q", f.read(8))
    raw = f.read(count * dtype.itemsize)
    if len(raw) != count * dtype.itemsize:
        raise ValueError("the weights file ends inside a tensor: it is truncated")
    return np.frombuffer(raw, dtype=dtype)


def _resolve(ref: _TensorRef, storages: dict[str, np.ndarray]) -> np.ndarray:
    key, offset, size, stride = ref
    flat = storages[key][offset:]
    extent = 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) if all(size) else 0
    if offset < 0 or extent > flat.size:
        raise ValueError(f"a tensor of shape {size} reaches past its storage: the file is damaged")
    strides = [s * flat.itemsize for s in stride]
    return np.array(np.lib.stride_tricks.as_strided(flat, shape=size, strides=strides))
