"""Which image files a step uses, and their decoding through the kiosk's own preprocessing.

A run's `split.csv` (lab/run_dir.py) names its training and validation files;
`models/heldout-validation.csv` names the held-out validation files (sha256, label, path relative
to the data root) so the benchmark can be rerun without the run directory. Files are checked
against their sha256 before use: a benchmark on different bytes than the ones listed would
silently measure something else.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.intensity import NONE
from edge.kermany import LABELS, scan_split
from edge.preprocess import ImageError, load_model_input
from lab.run_dir import LabelledFile, label_index

log = logging.getLogger(__name__)

HELDOUT_FIELDS = ("sha256", "label", "path")


@dataclass
class DecodedImages:
    """Model inputs decoded once, reused by every model: uint8 (n, size, size, 1) and labels (n,)."""

    images: np.ndarray
    labels: np.ndarray
    files: list[LabelledFile]


def write_file_list(path: Path, files: Sequence[LabelledFile]) -> None:
    """Write sha256,label,path rows: names and hashes only, never pixels or patient ids."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HELDOUT_FIELDS)
        for entry in files:
            writer.writerow((entry.sha256, LABELS[entry.label], entry.path))


def read_file_list(path: Path) -> list[LabelledFile]:
    """Read a list written by `write_file_list`."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != HELDOUT_FIELDS:
            raise ValueError(
                f"{path} must have the columns {','.join(HELDOUT_FIELDS)}, got {reader.fieldnames}"
            )
        return [
            LabelledFile(row["path"], label_index(row["label"], f"{path}:{line}"), row["sha256"])
            for line, row in enumerate(reader, start=2)
        ]


def scan_folder(folder: Path) -> tuple[Path, list[LabelledFile]]:
    """Every image of a Kermany split folder (FOLDER/{NORMAL,PNEUMONIA}/*); paths relative to its parent."""
    folder = Path(folder).resolve()
    samples = scan_split(folder.parent, folder.name)
    files = [LabelledFile(s.path.relative_to(folder.parent).as_posix(), s.label, s.sha256) for s in samples]
    return folder.parent, files


def decode(
    data_root: Path, files: Sequence[LabelledFile], size: int, verify: bool = True, intensity: str = NONE
) -> DecodedImages:
    """Decode each file with `edge.preprocess.load_model_input`; missing, altered or broken files raise."""
    images = []
    for entry in files:
        path = Path(data_root) / entry.path
        try:
            data = path.read_bytes()
        except OSError as e:
            raise FileNotFoundError(
                f"{path} listed with label {LABELS[entry.label]} cannot be read: {e}"
            ) from e
        if verify and hashlib.sha256(data).hexdigest() != entry.sha256:
            raise ValueError(
                f"{path} does not match its listed sha256 {entry.sha256[:12]}...: the data set changed; "
                "point --data at the data root the list was made from"
            )
        try:
            images.append(load_model_input(data, size, intensity))
        except ImageError as e:
            raise ValueError(f"{path} cannot be decoded ({e.reason}): {e}") from e
    stacked = np.stack(images) if images else np.zeros((0, size, size, 1), np.uint8)
    labels = np.array([entry.label for entry in files], dtype=np.int64)
    log.info("decoded %d images at %dx%d", len(files), size, size)
    return DecodedImages(stacked, labels, list(files))
