"""The pictures a result shows, made when they are asked for, never while the clinic waits.

A case keeps its de-identified X-ray (edge.webapp.records.xray_copies) and a heatmap layer (edge.heatmap); the
result page lays the layer over a display-size copy of the X-ray, so a nurse can fade it or switch
it off; the report and the API get the two blended into one PNG. Heatmaps stored before the layer
(full-colour overlays) are served as they are. Each function answers None when there is nothing
to show (a refused case, or one whose image the retention period removed).
"""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import numpy as np
from PIL import Image

from edge.heatmap import DISPLAY_LONG_SIDE, display_size, overlay
from edge.webapp.records import database, xray_copies

_PNG_COLOUR_TYPE_OFFSET = 25  # in the IHDR chunk, after the signature, length, type, size and depth
_PNG_PALETTE = 3


def xray_jpeg(data_dir: Path | str, case: database.Case) -> bytes | None:
    """The case's de-identified X-ray at display size, as JPEG."""
    image = _stored_at_display_size(data_dir, case)
    if image is None:
        return None
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def heatmap_overlay(data_dir: Path | str, conn: sqlite3.Connection, case: database.Case) -> bytes | None:
    """The X-ray with its heatmap blended in, as one PNG (for print and for the API)."""
    layer = database.get_heatmap(conn, case.id)
    if layer is None or not is_layer(layer):
        return layer
    image = _stored_at_display_size(data_dir, case)
    return None if image is None else overlay(np.asarray(image), layer)


def is_layer(png: bytes) -> bool:
    """A heatmap layer is an indexed PNG; overlays stored by older kiosks are RGB."""
    return len(png) > _PNG_COLOUR_TYPE_OFFSET and png[_PNG_COLOUR_TYPE_OFFSET] == _PNG_PALETTE


def _stored_at_display_size(data_dir: Path | str, case: database.Case) -> Image.Image | None:
    """The stored copy shrunk for the screen; Pillow only, so a big film is held once, briefly."""
    if case.image_file is None:
        return None
    try:
        image = Image.open(xray_copies.path_of(data_dir, case.image_file))
    except FileNotFoundError:
        return None
    image.load()  # reads the one frame and closes the file
    if image.mode != "L":
        image = image.convert("L")
    image.thumbnail(display_size(image.width, image.height, DISPLAY_LONG_SIDE), reducing_gap=2.0)
    return image
