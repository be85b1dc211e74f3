"""De-identified copies of scored X-rays, kept for the retraining export.

What is kept is the decoded 8-bit gray pixels re-encoded as a fresh PNG: no EXIF, no text chunks, no
DICOM fields survive. The file is named after the sha256 of the uploaded bytes (never after the
uploaded file name, which may hold a patient's name) and written atomically (temporary file, fsync,
rename, fsync of the folder), so a crash leaves either the whole image or none.
"""

from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

from edge.bundle import atomic_write_bytes

log = logging.getLogger(__name__)

IMAGES_DIR = "images"
#: zlib level 1: a full-resolution X-ray encodes in tens of milliseconds instead of hundreds.
PNG_COMPRESS_LEVEL = 1
_NAME = re.compile(r"[0-9a-f]{64}\.png")


def images_dir(data_dir: Path | str) -> Path:
    return Path(data_dir) / IMAGES_DIR


def deidentified_png(pixels: np.ndarray) -> bytes:
    """A PNG holding only the pixels: Pillow writes no metadata unless asked to."""
    if pixels.dtype != np.uint8 or pixels.ndim != 2:
        raise ValueError(f"expected 2-D uint8 gray pixels, got {pixels.dtype} {pixels.shape}")
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def save(data_dir: Path | str, input_sha256: str, pixels: np.ndarray) -> str:
    """Store the de-identified image once per distinct upload; return its file name."""
    name = f"{input_sha256}.png"
    if not _NAME.fullmatch(name):
        raise ValueError(f"input_sha256 must be 64 lowercase hex digits, got {input_sha256!r}")
    folder = images_dir(data_dir)
    path = folder / name
    if not path.exists():
        atomic_write_bytes(path, deidentified_png(pixels))
        _fsync_dir(folder)
    return name


def path_of(data_dir: Path | str, name: str) -> Path:
    """The stored image's path; refuses anything but a name this module made."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a stored image name: {name!r}")
    return images_dir(data_dir) / name


def init_dir(data_dir: Path | str) -> None:
    """Create the folder and remove temporary files left by a crash mid-write."""
    folder = images_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob(".*.png.*"):
        log.warning("removing %s, left by an interrupted write", leftover.name)
        leftover.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable: without it a power cut can forget a committed image."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
