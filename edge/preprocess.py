"""The preprocessing contract: X-ray file bytes in, the model's uint8 input out.

Training, evaluation, quantization calibration, the benchmark and the kiosk all call these two
functions, so what was measured is what runs in the clinic. The training images were squashed to
224 x 224 with Pillow's bicubic resize without keeping the aspect ratio; `to_model_input` repeats
exactly that on full-resolution clinic images.

Supported: JPEG, PNG (8 and 16 bit; gray, RGB, RGBA, palette, CMYK inside JPEG), DICOM (MONOCHROME1
and MONOCHROME2, modality rescale and VOI window applied where present). EXIF orientation is honoured.
DICOM patient fields are never read into the result, logged or stored.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

#: Largest decoded image we accept (pixels); a clinic X-ray is at most ~3000 x 3000 (9 MP).
MAX_PIXELS = 50_000_000
#: Formats we accept: what an X-ray export actually produces.
ACCEPTED_FORMATS = ("JPEG", "PNG", "DICOM")
_DICOM_MAGIC_OFFSET = 128


class ImageError(ValueError):
    """A file that cannot be turned into a model input; `reason` is a stable machine code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class XrayImage:
    """A decoded X-ray: 8-bit grayscale at full resolution, upright, plus facts the quality gate needs."""

    pixels: np.ndarray  # uint8, shape (height, width)
    source_format: str  # one of ACCEPTED_FORMATS
    colourfulness: float  # mean |channel difference| of the original, 0.0 for true grayscale

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def load_xray(data: bytes) -> XrayImage:
    """Decode an X-ray file from bytes; raise ImageError with a clear reason otherwise."""
    if not data:
        raise ImageError("empty", "The file is empty.")
    if _is_dicom(data):
        return _load_dicom(data)
    return _load_raster(data)


def to_model_input(image: XrayImage, size: int) -> np.ndarray:
    """Squash to size x size with Pillow bicubic, as the training data was made; uint8 (size, size, 1)."""
    if image.pixels.dtype != np.uint8 or image.pixels.ndim != 2:
        raise ValueError(
            f"expected a 2-D uint8 grayscale image, got {image.pixels.dtype} {image.pixels.shape}"
        )
    pil = Image.fromarray(image.pixels, mode="L")
    if pil.size != (size, size):
        pil = pil.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(pil, dtype=np.uint8)[:, :, np.newaxis]


def load_model_input(data: bytes, size: int) -> np.ndarray:
    """Decode and preprocess in one call: the exact path from a file to the model's input tensor."""
    return to_model_input(load_xray(data), size)


def _is_dicom(data: bytes) -> bool:
    return data[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM"


def _load_raster(data: bytes) -> XrayImage:
    # The size is checked from the header before any pixel is decoded. Pillow's global
    # MAX_IMAGE_PIXELS and the warning filters are left alone: the kiosk decodes in several threads.
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in ACCEPTED_FORMATS:
                raise ImageError(
                    "unsupported_format",
                    f"{img.format} files are not accepted; use JPEG, PNG or DICOM.",
                )
            if img.width * img.height > MAX_PIXELS:
                raise ImageError("too_large", f"The image has too many pixels (limit {MAX_PIXELS:,}).")
            img.load()
            upright = ImageOps.exif_transpose(img)
            return _from_pil(upright, img.format)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError("too_large", f"The image has too many pixels (limit {MAX_PIXELS:,}).") from e
    except UnidentifiedImageError as e:
        raise ImageError("not_an_image", "The file is not a JPEG, PNG or DICOM image.") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError("corrupt", f"The image file is damaged or truncated ({e}).") from e


def _from_pil(img: Image.Image, source_format: str) -> XrayImage:
    """Reduce any Pillow mode to 8-bit gray, measuring colour first so the gate can see it."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(img, dtype=np.float64)
        return XrayImage(_stretch_to_uint8(wide), source_format, 0.0)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        img = _flatten_alpha(img)
    if img.mode == "CMYK":
        img = img.convert("RGB")
    if img.mode == "1":
        img = img.convert("L")
    colourfulness = 0.0
    if img.mode == "RGB":
        colourfulness = _colourfulness(np.asarray(img, dtype=np.int16))
    if img.mode != "L":
        img = img.convert("L")
    return XrayImage(np.asarray(img, dtype=np.uint8).copy(), source_format, colourfulness)


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite transparent pixels onto black, the colour of air on a radiograph."""
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _colourfulness(rgb: np.ndarray) -> float:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return float((np.abs(r - g).mean() + np.abs(g - b).mean() + np.abs(r - b).mean()) / 3.0)


def _stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map the used range linearly onto 0..255: 16-bit exports rarely fill all 16 bits."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _load_dicom(data: bytes) -> XrayImage:
    import pydicom  # imported here: only DICOM uploads pay for it

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as e:  # pydicom raises many types for malformed files
        raise ImageError("corrupt", f"The DICOM file could not be read ({type(e).__name__}).") from e
    try:
        return _dicom_to_xray(ds)
    except ImageError:
        raise
    except Exception as e:  # elements are parsed lazily: a damaged one fails here, with any type
        # Only the type is shown: a message could quote element values.
        raise ImageError("corrupt", f"The DICOM file has damaged image elements ({type(e).__name__}).") from e


def _dicom_to_xray(ds: Any) -> XrayImage:
    """Pixels through the modality LUT and VOI window, MONOCHROME1 inverted; patient fields untouched."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if "PixelData" not in ds:
        raise ImageError("no_pixels", "The DICOM file holds no image.")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows * cols > MAX_PIXELS:
        raise ImageError("too_large", f"The image has too many pixels (limit {MAX_PIXELS:,}).")
    try:
        raw = ds.pixel_array
    except Exception as e:
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown") if ds.file_meta else "unknown"
        name = getattr(syntax, "name", str(syntax))
        raise ImageError(
            "unsupported_dicom",
            f"The DICOM image could not be decoded (transfer syntax {name}); "
            "export it uncompressed or as JPEG/PNG.",
        ) from e
    if raw.ndim != 2:
        raise ImageError(
            "unsupported_dicom",
            f"Only single-frame grayscale DICOM is supported (pixel array shape {raw.shape}).",
        )
    values = apply_modality_lut(raw, ds)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        values = apply_voi_lut(values, ds)
    pixels = _stretch_to_uint8(np.asarray(values, dtype=np.float64))
    if ds.get("PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        log.info("DICOM is MONOCHROME1: inverting so that bone is bright")
        pixels = 255 - pixels
    return XrayImage(pixels, "DICOM", 0.0)
