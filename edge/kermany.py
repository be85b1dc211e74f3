"""The Kermany folder layout (`SPLIT/{NORMAL,PNEUMONIA}/*`): reading it, and naming its patients.

Training reads it, the benchmark reads it, and the kiosk writes it when a clinic exports confirmed
cases, so the layout and its rules live here once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edge.formats import ACCEPTED_SUFFIXES
from edge.provenance import sha256_file

LABELS: tuple[str, str] = ("NORMAL", "PNEUMONIA")
IMAGE_SUFFIXES = ACCEPTED_SUFFIXES  # the formats the kiosk accepts (edge.formats)

# personN_bacteria_M.jpeg -> personN; IM-0115-0001.jpeg -> IM-0115; NORMAL2-IM-0383-0001 -> NORMAL2-IM-0383
_PERSON = re.compile(r"^(person\d+)_", re.IGNORECASE)
_NORMAL_IM = re.compile(r"^((?:NORMAL2-)?IM-\d+)-\d+", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    """One labelled image file; `patient` groups files that must stay on one side of a split."""

    path: Path
    label: int  # index into LABELS: 0 NORMAL, 1 PNEUMONIA
    patient: str
    sha256: str


def patient_id(filename: str) -> str:
    """Patient id from a Kermany file name; unknown naming falls back to the file's stem (own patient)."""
    for pattern in (_PERSON, _NORMAL_IM):
        match = pattern.match(filename)
        if match:
            return match.group(1)
    return Path(filename).stem


def check_layout(root: Path, split: str) -> None:
    """Raise FileNotFoundError, saying what is expected, unless `root/split/{NORMAL,PNEUMONIA}` exist.

    Cheap (no file is read), so a command can check its data before loading TensorFlow.
    """
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise FileNotFoundError(
            f"{split_dir} does not exist: expected the Kermany layout "
            f"{split}/NORMAL and {split}/PNEUMONIA under {root}"
        )
    for label in LABELS:
        if not (split_dir / label).is_dir():
            raise FileNotFoundError(f"{split_dir / label} is missing: expected one folder per label {LABELS}")


def scan_split(root: Path, split: str) -> list[Sample]:
    """Every image of `root/split/{NORMAL,PNEUMONIA}`, sorted by path so runs are reproducible."""
    check_layout(root, split)
    split_dir = Path(root) / split
    samples = []
    for label_index, label in enumerate(LABELS):
        class_dir = split_dir / label
        for path in sorted(class_dir.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                samples.append(Sample(path, label_index, patient_id(path.name), sha256_file(path)))
    return samples


def drop_duplicates(samples: Iterable[Sample]) -> tuple[list[Sample], list[Sample]]:
    """Keep the first of byte-identical files; copies would leak across a train/validation split."""
    seen: set[str] = set()
    kept, dropped = [], []
    for sample in samples:
        (dropped if sample.sha256 in seen else kept).append(sample)
        seen.add(sample.sha256)
    return kept, dropped


def manifest_sha256(samples: Iterable[Sample]) -> str:
    """One hash naming exactly which files (by content and label) a run used."""
    digest = hashlib.sha256()
    for sample in sorted(samples, key=lambda s: (s.sha256, s.label)):
        digest.update(f"{sample.sha256},{LABELS[sample.label]}\n".encode())
    return digest.hexdigest()
