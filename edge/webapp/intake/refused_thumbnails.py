"""Thumbnails of refused films, so the nurse sees what the kiosk could not assess.

The storage rules keep no copy of a refused image, so the thumbnail lives only in the kiosk's
memory: a small gray JPEG (long side THUMB_LONG_SIDE, too small to read any text burned into the
film), made from the decoded pixels only (no file name, no DICOM field), kept for the few most
recent refusals and for KEEP_S seconds at most, and lost at a restart. The result page shown just
after the upload has it; later views say that refused images are not kept.
"""

from __future__ import annotations

import io
import threading
import time
from collections import OrderedDict

import numpy as np
from PIL import Image

from edge.heatmap import display_size

#: Longest side of the thumbnail, in pixels.
THUMB_LONG_SIDE = 160
#: How many refusals' thumbnails are held at most (the oldest goes first).
CAPACITY = 16
#: How long a thumbnail is held, in seconds.
KEEP_S = 15 * 60


def thumbnail_jpeg(pixels: np.ndarray) -> bytes:
    """A small gray JPEG of the film, for display only."""
    image = Image.fromarray(pixels)
    image.thumbnail(display_size(image.width, image.height, THUMB_LONG_SIDE), reducing_gap=2.0)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


class RefusedThumbnails:
    """The most recent refusals' thumbnails by case id; thread-safe, memory only."""

    def __init__(self, capacity: int = CAPACITY, keep_s: float = KEEP_S) -> None:
        self._capacity = capacity
        self._keep_s = keep_s
        self._held: OrderedDict[int, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, case_id: int, jpeg: bytes) -> None:
        with self._lock:
            self._held[case_id] = (time.monotonic(), jpeg)
            while len(self._held) > self._capacity:
                self._held.popitem(last=False)

    def get(self, case_id: int) -> bytes | None:
        """The thumbnail, or None once it was dropped (too old, too many since, or a restart)."""
        with self._lock:
            self._drop_expired()
            held = self._held.get(case_id)
            return None if held is None else held[1]

    def _drop_expired(self) -> None:
        cutoff = time.monotonic() - self._keep_s
        while self._held and next(iter(self._held.values()))[0] < cutoff:
            self._held.popitem(last=False)
