"""De-identified copies of scored X-rays, kept for the retraining export.

What is kept is the decoded 8-bit gray pixels written as a minimal PNG (IHDR, IDAT, IEND and nothing
else): no EXIF, no text chunks, no DICOM fields can survive. It is encoded here with numpy and zlib
because Pillow's adaptive PNG filtering costs several times more per full-resolution X-ray, inside
the time the clinic waits for a result; any PNG reader (Pillow included) reads it.

The file is named after the sha256 of the uploaded bytes (never after the uploaded file name, which
may hold a patient's name) and written atomically (temporary file, fsync, rename, fsync of the
folder), so a crash leaves either the whole image or none.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from edge.files import atomic_write_bytes

log = logging.getLogger(__name__)

IMAGES_DIR = "images"
#: zlib level 1: on X-rays nearly as small as level 6, at a fraction of the time.
PNG_COMPRESS_LEVEL = 1
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_FILTER_UP = 2  # each row stored as its difference from the row above: cheap, and compresses well
_NAME = re.compile(r"[0-9a-f]{64}\.png")


def images_dir(data_dir: Path | str) -> Path:
    return Path(data_dir) / IMAGES_DIR


def deidentified_png(pixels: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG holding the pixels and nothing else."""
    if pixels.dtype != np.uint8 or pixels.ndim != 2 or 0 in pixels.shape:
        raise ValueError(f"expected non-empty 2-D uint8 gray pixels, got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape
    rows = np.empty((height, width + 1), dtype=np.uint8)
    rows[:, 0] = _PNG_FILTER_UP
    rows[0, 1:] = pixels[0]  # the row above the first is zeros
    np.subtract(pixels[1:], pixels[:-1], out=rows[1:, 1:])  # modulo 256, as PNG defines it
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray, no interlace
    image_data = zlib.compress(rows, PNG_COMPRESS_LEVEL)  # the array's own buffer: no full-size copy
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", image_data) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def save(data_dir: Path | str, input_sha256: str, png: bytes) -> str:
    """Store a de-identified PNG (from `deidentified_png`) once per distinct upload; return its name."""
    name = f"{input_sha256}.png"
    if not _NAME.fullmatch(name):
        raise ValueError(f"input_sha256 must be 64 lowercase hex digits, got {input_sha256!r}")
    folder = images_dir(data_dir)
    path = folder / name
    if not path.exists():
        atomic_write_bytes(path, png)
        _fsync_dir(folder)
    return name


def path_of(data_dir: Path | str, name: str) -> Path:
    """The stored image's path; refuses anything but a name this module made."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a stored image name: {name!r}")
    return images_dir(data_dir) / name


def init_dir(data_dir: Path | str) -> None:
    """Create the folder (the kiosk's user's alone) and remove temporary files left by a crash mid-write."""
    folder = images_dir(data_dir)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
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
