"""Tiny but real model bundles for tests, and the synthetic films they are made and checked with.

`build_tiny_bundle` makes a small tf_keras model with the real serving signature, converts it with
the real TFLite converter (full-integer int8 with a uint8 input, or plain float32) and writes a real,
verified bundle with `edge.bundle.write_bundle`. Both bundles are committed under tests/fixtures/
(a few KB), so the edge and kiosk tests load them with no TensorFlow installed (`copy_fixture`);
tests/test_fixtures.py checks in the training environment that rebuilding them gives the same bytes.
After a deliberate change, rebuild them: `python -m tests.tiny_bundle --write`.

`export_serving_signature` is the export recipe the real exporter in `quantize/` must follow too:
wrap the model in a `tf.function` that returns a dict, so the TFLite signature's outputs are named
`probability`, `cam` and `embedding` (a plain `from_keras_model` names them after Keras layers).

The synthetic films (`synthetic_xray`, `encode`, `xray_bytes`) come from lab/synthetic.py, so product
code (`make golden`, the benchmarks) never imports tests; `dicom_bytes` wraps pixels in a DICOM file
that carries a patient name.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from edge import bundle as bundle_format
from edge.calibration import Head
from edge.preprocess import load_model_input
from edge.quality import rms_z
from lab.synthetic import encode, synthetic_xray, xray_bytes

#: The films are lab.synthetic's; tests/edge/webapp still takes them from here.
__all__ = ["dicom_bytes", "encode", "synthetic_xray", "xray_bytes"]

FIXTURES = Path(__file__).resolve().parent / "fixtures"
VARIANTS = ("int8", "float32")
INPUT_SIZE = 224
FEATURE_CHANNELS = 16
CAM_SIZE = 7
OOD_FIXTURE_MARGIN = 1.5
LABELS = ["NORMAL", "PNEUMONIA"]
PATIENT = "Doe^Janet"  # must never appear in a result or a log
DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


def dicom_bytes(
    raw: np.ndarray,
    photometric: str = "MONOCHROME2",
    transfer_syntax: str = ExplicitVRLittleEndian,
    **elements: object,
) -> bytes:
    """A DICOM file holding `raw` (uint16, 12 bits stored) plus any extra elements; a compressed
    `transfer_syntax` gets an undecodable encapsulated frame."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_SOP_CLASS
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = PATIENT
    ds.PatientID = "PID-424242"
    ds.Modality = "DX"
    ds.Rows, ds.Columns = raw.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    if transfer_syntax == ExplicitVRLittleEndian:
        ds.PixelData = raw.astype("<u2").tobytes()
    else:
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51 not really a JPEG 2000 codestream"])
        ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _tf():
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def build_tiny_keras_model(seed: int = 0):
    """Raw pixels (224, 224, 1) -> Rescaling -> strided convs -> 'features' 7x7xC -> GAP -> Dense head."""
    _tf()
    import tf_keras as keras

    # Layer names come from a per-process counter and are written into the .tflite file: start it
    # afresh, so a build after other models (a whole test session) gives the committed bytes.
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1), name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(8, 5, strides=4, padding="same", activation="relu")(x)  # 56
    x = keras.layers.Conv2D(12, 3, strides=4, padding="same", activation="relu")(x)  # 14
    x = keras.layers.Conv2D(
        FEATURE_CHANNELS, 3, strides=2, padding="same", activation="relu", name="features"
    )(x)  # 7
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="probability")(pooled)
    return keras.Model(inputs, outputs, name="tiny_pneumo")


def convert(model, variant: str) -> bytes:
    """Convert with the exporter's recipe: `int8` is full-integer with a uint8 input."""
    if variant not in ("int8", "float32"):
        raise ValueError(f"variant must be 'int8' or 'float32', got {variant!r}")
    _tf()
    from quantize.convert import to_tflite

    calibration = None
    if variant == "int8":
        calibration = np.stack(
            [
                load_model_input(xray_bytes(seed=1000 + s, width=500, height=600), INPUT_SIZE)
                for s in range(16)
            ]
        )
    return to_tflite(model, "features", variant == "int8", calibration)


def _embeddings(model_bytes: bytes, images: list[np.ndarray]) -> np.ndarray:
    """Embeddings through the converted model, so the OOD statistics match what the edge computes."""
    from edge.runtime import TfliteModel

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model_bytes)
        runner = TfliteModel(path)
        return np.stack([runner.run(image)[bundle_format.OUTPUT_EMBEDDING][0] for image in images])


def ood_section(model_bytes: bytes, count: int = 100) -> dict[str, object]:
    """The exporter's `ood` section from synthetic X-rays unseen in calibration, with a wider threshold.

    A fixture must not refuse any synthetic X-ray another test makes, so the threshold is the highest
    score of all `count` images times OOD_FIXTURE_MARGIN; noise still scores well above it.
    """
    from quantize.calibrate import ood_section as exporter_ood_section

    images = [
        load_model_input(xray_bytes(seed=2000 + s, width=300 + 7 * s, height=360 + 5 * s), INPUT_SIZE)
        for s in range(count)
    ]
    embeddings = _embeddings(model_bytes, images)
    section = exporter_ood_section(embeddings[: count // 2], embeddings[count // 2 :])
    highest = float(rms_z(embeddings, np.asarray(section["mean"]), np.asarray(section["std"])).max())
    return {**section, "threshold": highest * OOD_FIXTURE_MARGIN}


def build_tiny_bundle(root: Path, variant: str = "int8", threshold: float = 0.5) -> bundle_format.Bundle:
    """Build, convert and write a tiny verified bundle named `tiny-<variant>` under `root`."""
    model = build_tiny_keras_model()
    model_bytes = convert(model, variant)
    kernel, bias = model.get_layer("probability").get_weights()
    metadata = {
        "name": f"tiny-{variant}",
        "variant": variant,
        "labels": LABELS,
        "threshold": threshold,
        "threshold_rule": "fixed for tests",
        "input": {
            "height": INPUT_SIZE,
            "width": INPUT_SIZE,
            "channels": 1,
            "colour": "grayscale",
            "resize": "pillow-bicubic-squash",
            "dtype": "uint8" if variant == "int8" else "float32",
            "value_range": [0, 255],
            "preprocess": "edge.preprocess.load_model_input",
        },
        "outputs": {
            bundle_format.OUTPUT_PROBABILITY: {"shape": [1, 1], "meaning": "P(PNEUMONIA)"},
            bundle_format.OUTPUT_CAM: {"shape": [1, CAM_SIZE, CAM_SIZE], "meaning": "class activation map"},
            bundle_format.OUTPUT_EMBEDDING: {"shape": [1, FEATURE_CHANNELS], "meaning": "pooled features"},
        },
        "head": Head(kernel.reshape(-1).astype(np.float64), float(bias[0])).to_metadata(),
        "ood": ood_section(model_bytes),
        "provenance": {"run": "tests/tiny_bundle.py", "calibration_images": 16},
    }
    return bundle_format.write_bundle(Path(root), model_bytes, metadata)


def copy_fixture(variant: str, root: Path) -> bundle_format.Bundle:
    """Copy the committed `tiny-<variant>` bundle to `root` (tests may alter it) and load it, verified."""
    shutil.copytree(FIXTURES / f"tiny-{variant}", root)
    return bundle_format.load_bundle(root)


def write_fixtures(out: Path = FIXTURES) -> None:
    """Rebuild every committed tiny bundle under `out` (needs TensorFlow: the training environment)."""
    for variant in VARIANTS:
        target = out / f"tiny-{variant}"
        shutil.rmtree(target, ignore_errors=True)
        build_tiny_bundle(target, variant)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rebuild the committed tiny test bundles (tests/fixtures).")
    parser.add_argument("--write", action="store_true", required=True, help="overwrite tests/fixtures/tiny-*")
    parser.parse_args(argv)
    write_fixtures()
    print(f"wrote {', '.join(f'tiny-{v}' for v in VARIANTS)} under {FIXTURES}")


if __name__ == "__main__":
    main()
