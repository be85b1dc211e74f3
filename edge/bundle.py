"""The model bundle: the versioned contract between `quantize/` (writes) and `edge/` (reads).

A bundle is a folder holding `model.tflite` and `bundle.json`. The edge refuses a bundle whose
format version it does not know or whose model file does not match the recorded sha256, so a kiosk
never runs a model nobody measured. The format is documented in docs/bundle-format.md.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.calibration import Calibration, Head
from edge.files import atomic_write_bytes
from edge.intensity import METHODS, NONE
from edge.kermany import LABELS
from edge.provenance import sha256_file

FORMAT = "pneumoedge-bundle"
FORMAT_VERSION = 2  # 2: `head` (float head on the embedding) and `calibration`
METADATA_FILE = "bundle.json"
MODEL_FILE = "model.tflite"
#: Bundles are public release artefacts that the kiosk's service user must be able to read.
BUNDLE_FILE_MODE = 0o644

#: Signature output names every bundle's model provides.
OUTPUT_PROBABILITY = "probability"  # (1, 1) P(PNEUMONIA)
OUTPUT_CAM = "cam"  # (1, h, w) class activation map: last-conv features . head weights (+ bias)
OUTPUT_EMBEDDING = "embedding"  # (1, d) pooled features, for the out-of-distribution check
#: (1, h, w, d) last-conv features, optional: the kiosk then draws the cam with the bundle's own head,
#: so a head refitted on a site's films (`python -m edge calibrate`) explains its own decision.
OUTPUT_FEATURES = "features"
#: The model inputs the kiosk feeds (edge.preprocess.load_model_input, cast by edge.runtime).
INPUT_DTYPES = ("uint8", "float32")


class BundleError(RuntimeError):
    """A bundle that must not be loaded; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: where its model file is, and its metadata."""

    root: Path
    metadata: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.root / self.metadata["model_file"]

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def model_sha256(self) -> str:
        return str(self.metadata["model_sha256"])

    @property
    def threshold(self) -> float:
        return float(self.metadata["threshold"])

    @property
    def input_size(self) -> int:
        return int(self.metadata["input"]["height"])

    @property
    def intensity(self) -> str:
        """The intensity standardisation its model was trained with (edge.intensity; older bundles: none)."""
        return str(self.metadata["input"].get("intensity", NONE))

    @property
    def labels(self) -> list[str]:
        return list(self.metadata["labels"])

    @property
    def head(self) -> Head:
        return Head.from_metadata(self.metadata["head"])

    @property
    def calibration(self) -> Calibration:
        return Calibration.from_metadata(self.metadata.get("calibration"))


def load_bundle(root: Path | str) -> Bundle:
    """Read and verify a bundle; raise BundleError rather than ever load an unverified model."""
    root = Path(root)
    meta_path = root / METADATA_FILE
    if not meta_path.is_file():
        raise BundleError(f"{root} is not a model bundle: {METADATA_FILE} is missing")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BundleError(f"{meta_path} cannot be read as JSON: {e}") from e
    _check_format(metadata, meta_path)
    bundle = Bundle(root, metadata)
    if not bundle.model_path.is_file():
        raise BundleError(f"the model file {bundle.model_path} named in {meta_path} is missing")
    actual = sha256_file(bundle.model_path)
    if actual != bundle.model_sha256:
        raise BundleError(
            f"{bundle.model_path} has sha256 {actual} but {METADATA_FILE} expects "
            f"{bundle.model_sha256}: the model file was altered or replaced. "
            "Reinstall the bundle from a verified release."
        )
    return bundle


def _check_format(metadata: dict[str, Any], meta_path: Path) -> None:
    if metadata.get("format") != FORMAT:
        raise BundleError(f"{meta_path} is not a {FORMAT} file (format={metadata.get('format')!r})")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{meta_path} has format_version {version!r}; this kiosk reads version "
            f"{FORMAT_VERSION}. Update the kiosk software or re-export the model."
        )
    required = ("name", "labels", "model_file", "model_sha256", "threshold", "input", "outputs", "head")
    missing = [key for key in required if key not in metadata]
    if missing:
        raise BundleError(f"{meta_path} lacks required fields: {', '.join(missing)}")
    refusals = [reason for reason in _unhandled(metadata) if reason]
    if refusals:
        raise BundleError(f"{meta_path}: this kiosk cannot run it: {'; '.join(refusals)}")


def _unhandled(metadata: dict[str, Any]) -> list[str]:
    """What in a well-formed bundle the kiosk does not handle: its pages, records and FHIR say
    NORMAL / PNEUMONIA, feed uint8 or float32 pixels and read P(PNEUMONIA) and the embedding."""
    labels, dtype = metadata["labels"], metadata["input"].get("dtype")
    intensity = metadata["input"].get("intensity", NONE)
    outputs, threshold = metadata["outputs"], metadata["threshold"]
    return [
        list(labels) != list(LABELS) and f"labels {labels!r}, not {list(LABELS)!r}",
        dtype not in INPUT_DTYPES and f"input dtype {dtype!r}, not one of {', '.join(INPUT_DTYPES)}",
        not {OUTPUT_PROBABILITY, OUTPUT_EMBEDDING} <= set(outputs)
        and f"outputs {sorted(outputs)!r} lack {OUTPUT_PROBABILITY!r} or {OUTPUT_EMBEDDING!r}",
        not (isinstance(threshold, (int, float)) and 0.0 < threshold < 1.0)
        and f"threshold {threshold!r} is not a probability strictly between 0 and 1",
        intensity not in METHODS
        and f"intensity standardisation {intensity!r}, not one of {', '.join(METHODS)}",
    ]


def write_bundle(root: Path | str, model_bytes: bytes, metadata: dict[str, Any]) -> Bundle:
    """Write model and metadata (sha256 filled in) atomically, so no reader sees half a bundle."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    full = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_file": MODEL_FILE,
        **metadata,
        "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
    }
    atomic_write_bytes(root / MODEL_FILE, model_bytes, mode=BUNDLE_FILE_MODE)
    atomic_write_bytes(
        root / METADATA_FILE, (json.dumps(full, indent=2) + "\n").encode(), mode=BUNDLE_FILE_MODE
    )
    return load_bundle(root)
