"""Training augmentation: positioning, exposure and the ways a film reaches the model from site to site.

The v0.1 model learnt the look of the training copies (one resampling path, JPEG quality 75, one
exposure curve) and over-called pneumonia on a later cohort. Every training film is therefore drawn
through a random acquisition: small rotation, shift and zoom (positioning), brightness and contrast,
then, each with probability `p`, a gamma curve, sensor noise, blur or sharpening, a resampling chain
with random kernels and JPEG re-encoding at a random quality. The robustness suite (lab/shift.py)
measures the same families at fixed points; the ranges here are continuous and wider.

It runs in Pillow and numpy, in worker processes, once before training: `copies` augmented versions
of each film, one drawn per epoch. On the 2-core build machine the same work as tf.data map
functions doubled the step time; precomputed, it costs about a minute for five copies.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

_R = Image.Resampling
_RESAMPLERS = (_R.BOX, _R.BILINEAR, _R.BICUBIC, _R.LANCZOS)


@dataclass(frozen=True)
class AugmentRanges:
    """Every random change and its range; acquisition changes each apply with probability `p`."""

    rotation_degrees: float = 7.0
    shift_fraction: float = 0.06
    zoom_fraction: float = 0.10
    brightness: float = 0.10  # share of the 0..255 range
    contrast: float = 0.15
    acquisition: bool = True
    p: float = 0.5
    resample_scale: tuple[float, float] = (0.3, 0.9)
    jpeg_quality: tuple[int, int] = (25, 95)
    gamma: tuple[float, float] = (0.6, 1.6)
    blur_radius: tuple[float, float] = (0.4, 1.5)
    sharpen_percent: tuple[int, int] = (50, 200)
    noise_std: tuple[float, float] = (1.0, 8.0)


def augment(pixels: np.ndarray, ranges: AugmentRanges, rng: np.random.Generator) -> np.ndarray:
    """One random acquisition of one 8-bit gray film (h, w), in the order patient -> detector -> export."""
    img = _position(Image.fromarray(pixels, mode="L"), ranges, rng)
    values = _exposure(np.asarray(img, dtype=np.float32), ranges, rng)
    if ranges.acquisition:
        if rng.random() < ranges.p / 2:
            values = values + rng.normal(0.0, rng.uniform(*ranges.noise_std), values.shape)
        img = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
        if rng.random() < ranges.p:
            img = _blur_or_sharpen(img, ranges, rng)
        if rng.random() < ranges.p:
            img = _resample(img, ranges, rng)
        if rng.random() < ranges.p:
            img = _jpeg(img, ranges, rng)
        return np.asarray(img, dtype=np.uint8)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _position(img: Image.Image, ranges: AugmentRanges, rng: np.random.Generator) -> Image.Image:
    """Rotation, shift and zoom about the centre in one affine resampling, black outside the film."""
    angle = np.deg2rad(rng.uniform(-ranges.rotation_degrees, ranges.rotation_degrees))
    zoom = 1.0 + rng.uniform(-ranges.zoom_fraction, ranges.zoom_fraction)
    w, h = img.size
    tx, ty = (rng.uniform(-ranges.shift_fraction, ranges.shift_fraction, 2) * (w, h)).tolist()
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    cx, cy = w / 2.0, h / 2.0
    # inverse map: output (x, y) -> input point
    a, b = cos, sin
    d, e = -sin, cos
    c = cx - a * (cx + tx) - b * (cy + ty)
    f = cy - d * (cx + tx) - e * (cy + ty)
    return img.transform(img.size, Image.Transform.AFFINE, (a, b, c, d, e, f), _R.BILINEAR, fillcolor=0)


def _exposure(values: np.ndarray, ranges: AugmentRanges, rng: np.random.Generator) -> np.ndarray:
    values = values + 255.0 * rng.uniform(-ranges.brightness, ranges.brightness)
    mean = values.mean()
    values = (values - mean) * (1.0 + rng.uniform(-ranges.contrast, ranges.contrast)) + mean
    if ranges.acquisition and rng.random() < ranges.p:
        gamma = float(np.exp(rng.uniform(np.log(ranges.gamma[0]), np.log(ranges.gamma[1]))))
        values = 255.0 * (np.clip(values, 0, 255) / 255.0) ** gamma
    return values


def _blur_or_sharpen(img: Image.Image, ranges: AugmentRanges, rng: np.random.Generator) -> Image.Image:
    if rng.random() < 0.5:
        return img.filter(ImageFilter.GaussianBlur(rng.uniform(*ranges.blur_radius)))
    percent = int(rng.integers(ranges.sharpen_percent[0], ranges.sharpen_percent[1] + 1))
    return img.filter(ImageFilter.UnsharpMask(rng.uniform(1.0, 3.0), percent, threshold=0))


def _resample(img: Image.Image, ranges: AugmentRanges, rng: np.random.Generator) -> Image.Image:
    """Down (or up) and back with a random pair of kernels: a different scaler in each export path."""
    factor = rng.uniform(*ranges.resample_scale) if rng.random() < 0.7 else rng.uniform(1.5, 4.0)
    size = (max(16, round(img.width * factor)), max(16, round(img.height * factor)))
    down, up = (_RESAMPLERS[i] for i in rng.integers(len(_RESAMPLERS), size=2))
    return img.resize(size, down).resize(img.size, up)


def _jpeg(img: Image.Image, ranges: AugmentRanges, rng: np.random.Generator) -> Image.Image:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=int(rng.integers(ranges.jpeg_quality[0], ranges.jpeg_quality[1] + 1)))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("L")


def _augment_chunk(args: tuple[np.ndarray, AugmentRanges, int]) -> np.ndarray:
    images, ranges, seed = args
    rng = np.random.default_rng(seed)
    return np.stack([augment(image[..., 0], ranges, rng)[..., np.newaxis] for image in images])


def augmented_copies(images: np.ndarray, copies: int, ranges: AugmentRanges, seed: int) -> np.ndarray:
    """`copies` augmented versions of every image (n, s, s, 1) -> (copies * n, s, s, 1), reproducible."""
    chunks = [
        (images[start : start + 256], ranges, seed * 1_000_003 + copy * 10_007 + start)
        for copy in range(copies)
        for start in range(0, len(images), 256)
    ]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return np.concatenate(list(pool.map(_augment_chunk, chunks)))
