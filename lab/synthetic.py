"""Synthetic chest films: no patient data, so tests, golden answers and benchmarks can run anywhere.

`synthetic_xray` paints a plausible gray chest radiograph (dark air, soft-tissue trunk, dark lung
fields crossed by bright ribs, bright spine and heart shadow, grain). `make golden` draws its
committed films with it, the kiosk benchmark uses it when no real film is at hand, and the tests
make their images with it (through tests/tiny_bundle.py). Pillow and numpy only.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def synthetic_xray(
    seed: int = 0, width: int = 1000, height: int = 1200, lesion: tuple[float, float] | None = None
) -> np.ndarray:
    """A gray chest-X-ray-like uint8 image (height, width); `lesion` (x, y in 0..1) adds a bright opacity."""
    rng = np.random.default_rng(seed)
    img = Image.new("L", (width, height), int(rng.integers(5, 25)))
    draw = ImageDraw.Draw(img)
    w, h = width, height
    jitter = rng.uniform(-0.03, 0.03, size=8)
    trunk = int(rng.integers(120, 160))
    draw.ellipse(
        [w * (0.08 + jitter[0]), h * (0.05 + jitter[1]), w * (0.92 + jitter[2]), h * 1.15], fill=trunk
    )
    lung = int(rng.integers(40, 80))
    for left, right in ((0.18, 0.46), (0.54, 0.82)):
        draw.ellipse(
            [w * (left + jitter[3]), h * (0.18 + jitter[4]), w * (right + jitter[5]), h * (0.82 + jitter[6])],
            fill=lung,
        )
    rib = min(255, lung + int(rng.integers(35, 60)))
    for k in range(9):
        y = h * (0.2 + 0.07 * k + jitter[7])
        for x0, x1 in ((0.16, 0.5), (0.5, 0.84)):
            draw.arc([w * x0, y - h * 0.05, w * x1, y + h * 0.08], 200, 340, fill=rib, width=max(2, h // 90))
    draw.rectangle([w * 0.47, 0, w * 0.53, h], fill=min(255, trunk + 50))  # spine
    draw.ellipse([w * 0.42, h * 0.45, w * 0.66, h * 0.78], fill=min(255, trunk + 20))  # heart
    if lesion is not None:
        cx, cy = lesion[0] * w, lesion[1] * h
        draw.ellipse([cx - w * 0.08, cy - h * 0.07, cx + w * 0.08, cy + h * 0.07], fill=220)
    img = img.filter(ImageFilter.GaussianBlur(radius=max(1.0, min(w, h) / 150)))
    pixels = np.asarray(img, dtype=np.float64) + rng.normal(0.0, 6.0, size=(h, w))
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def encode(pixels: np.ndarray, fmt: str = "JPEG", **save_args: object) -> bytes:
    """Encode a uint8 array (gray or RGB) as image file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def xray_bytes(
    seed: int = 0, fmt: str = "JPEG", width: int = 1000, height: int = 1200, **kwargs: object
) -> bytes:
    """A synthetic X-ray as JPEG or PNG file bytes."""
    return encode(synthetic_xray(seed, width, height, **kwargs), fmt)
