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
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageOps, ImageStat, UnidentifiedImageError

from edge.formats import ACCEPTED_FORMATS, DICOM, Sniffed, sniff
from edge.intensity import NONE, standardise

log = logging.getLogger(__name__)

#: Largest image we accept (pixels, from the header); a clinic X-ray is at most ~4300 x 4300 (18 MP).
MAX_PIXELS = 50_000_000
#: Most memory one decode may need (the decoder's buffer plus its working copies), checked from the
#: header before any pixel is allocated: a small board must survive any single upload.
DECODE_BUDGET_BYTES = 128 * 1024 * 1024
#: Largest decoded image handed on to the model, the heatmap and the stored copy (pixels).
MAX_DECODED_PIXELS = 25_000_000
#: A JPEG too big for the budget is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling), never
#: below this long side: the model's 224 x 224 input is then the same within rounding.
MIN_REDUCED_LONG_SIDE = 1024
#: Bytes per decoded pixel each Pillow mode needs on its way to 8-bit gray (buffer + working copies).
_DECODE_BYTES_PER_PIXEL = {
    "1": 4,
    "L": 3,
    "I;16": 4,
    "I;16B": 4,
    "I;16L": 4,
    "I": 6,
    "F": 6,
    "RGB": 8,
    "CMYK": 16,
}
_OTHER_MODE_BYTES_PER_PIXEL = 20  # P, RGBA, LA, PA: alpha flattening goes through RGBA
#: Rows converted at a time from 16-bit (or DICOM) values to 8-bit, bounding the float64 working set.
_CHUNK_PIXELS = 1 << 18
#: DICOM elements larger than this are not read at parse time (the pixel data stays in the upload).
_DICOM_DEFER_BYTES = 64 * 1024


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
    sniffed = sniff(data)
    if sniffed is not None and sniffed.format == DICOM:
        return _load_dicom(data, sniffed)
    return _load_raster(data)


def to_model_input(image: XrayImage, size: int, intensity: str = NONE) -> np.ndarray:
    """Squash to size x size with Pillow bicubic, as the training data was made, then standardise the
    intensity as the bundle says (edge.intensity); uint8 (size, size, 1)."""
    if image.pixels.dtype != np.uint8 or image.pixels.ndim != 2:
        raise ValueError(
            f"expected a 2-D uint8 grayscale image, got {image.pixels.dtype} {image.pixels.shape}"
        )
    pil = Image.fromarray(image.pixels, mode="L")
    if pil.size != (size, size):
        pil = pil.resize((size, size), Image.Resampling.BICUBIC)
    return standardise(np.asarray(pil, dtype=np.uint8)[:, :, np.newaxis], intensity)


def load_model_input(data: bytes, size: int, intensity: str = NONE) -> np.ndarray:
    """Decode and preprocess in one call: the exact path from a file to the model's input tensor."""
    return to_model_input(load_xray(data), size, intensity)


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
            if img.format == "JPEG":
                _draft_within_budget(img)
            _check_budget(img.width, img.height, _mode_cost(img.mode), _describe_mode(img.mode))
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # no copy when the film is already upright
            return _from_pil(img, img.format)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError("too_large", f"The image has too many pixels (limit {MAX_PIXELS:,}).") from e
    except UnidentifiedImageError as e:
        raise ImageError("not_an_image", "The file is not a JPEG, PNG or DICOM image.") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError("corrupt", f"The image file is damaged or truncated ({e}).") from e


def _mode_cost(mode: str) -> int:
    return _DECODE_BYTES_PER_PIXEL.get(mode, _OTHER_MODE_BYTES_PER_PIXEL)


def _describe_mode(mode: str) -> str:
    return {"I;16": "16-bit gray", "I;16B": "16-bit gray", "I;16L": "16-bit gray", "I": "32-bit gray",
            "RGB": "colour", "CMYK": "CMYK colour", "L": "8-bit gray"}.get(mode, f"{mode} mode")  # fmt: skip


def _fits(width: int, height: int, bytes_per_pixel: int) -> bool:
    pixels = width * height
    return pixels <= MAX_DECODED_PIXELS and pixels * bytes_per_pixel <= DECODE_BUDGET_BYTES


def _draft_within_budget(img: Image.Image) -> None:
    """Ask libjpeg to decode at 1/2, 1/4 or 1/8 scale when the full size would not fit the budget.

    Only as much as needed and never below MIN_REDUCED_LONG_SIDE, so every JPEG that fits is decoded
    exactly as the training images were.
    """
    width, height = img.size
    cost = _mode_cost(img.mode)
    scale = 1
    while not _fits(math.ceil(width / scale), math.ceil(height / scale), cost):
        if scale == 8 or max(width, height) / (scale * 2) < MIN_REDUCED_LONG_SIDE:
            return  # cannot reduce enough: _check_budget refuses it
        scale *= 2
    if scale > 1:
        img.draft(img.mode, (math.ceil(width / scale), math.ceil(height / scale)))
        log.info("decoding a large JPEG at 1/%d scale to stay within the memory budget", scale)


def _check_budget(width: int, height: int, bytes_per_pixel: int, kind: str) -> None:
    if _fits(width, height, bytes_per_pixel):
        return
    need_mb = width * height * bytes_per_pixel / (1024 * 1024)
    raise ImageError(
        "too_large",
        f"The image is too big for this kiosk to open: {width} x {height} pixels of {kind} needs "
        f"about {need_mb:.0f} MB (the limit is {DECODE_BUDGET_BYTES // (1024 * 1024)} MB and "
        f"{MAX_DECODED_PIXELS / 1e6:.0f} megapixels). Export the X-ray again at a lower resolution "
        "(at most about 4000 pixels on the long side), or as an 8-bit JPEG.",
    )


def _from_pil(img: Image.Image, source_format: str) -> XrayImage:
    """Reduce any Pillow mode to 8-bit gray, measuring colour first so the gate can see it."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return XrayImage(_stretch_pil_to_uint8(img), source_format, 0.0)
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
        colourfulness = _colourfulness(img)
    if img.mode != "L":
        img = img.convert("L")
    return XrayImage(np.asarray(img, dtype=np.uint8).copy(), source_format, colourfulness)


def _stretch_pil_to_uint8(img: Image.Image) -> np.ndarray:
    """`_stretch_to_uint8` of a 16/32-bit Pillow image, a band of rows at a time (no full float copy)."""
    lo, hi = img.getextrema()
    width, height = img.size
    out = np.empty((height, width), dtype=np.uint8)
    step = max(1, _CHUNK_PIXELS // max(1, width))
    for top in range(0, height, step):
        band = np.asarray(img.crop((0, top, width, min(height, top + step))), dtype=np.float64)
        out[top : top + step] = _stretch_with(band, float(lo), float(hi))
    return out


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite transparent pixels onto black, the colour of air on a radiograph."""
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _colourfulness(img: Image.Image) -> float:
    """Mean |channel difference| of an RGB image: 8-bit band differences, no wide copies."""
    r, g, b = img.split()
    means = [ImageStat.Stat(ImageChops.difference(x, y)).mean[0] for x, y in ((r, g), (g, b), (r, b))]
    return float(sum(means) / 3.0)


def _stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map the used range linearly onto 0..255: 16-bit exports rarely fill all 16 bits."""
    return _stretch_with(values, float(values.min()), float(values.max()))


def _stretch_with(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


class _DicomStream(io.BytesIO):
    """The upload from `start` on, as pydicom's file (no copy): a file without the 128-byte
    preamble is read with force=True, which rewinds to 0 and must land on the data set."""

    def __init__(self, data: bytes, start: int) -> None:
        super().__init__(data)
        self.start = start
        super().seek(start)

    def seek(self, pos: int, whence: int = 0) -> int:
        return super().seek(pos + self.start if whence == 0 else pos, whence) - self.start

    def tell(self) -> int:
        return super().tell() - self.start


def _load_dicom(data: bytes, sniffed: Sniffed) -> XrayImage:
    import pydicom  # imported here: only DICOM uploads pay for it

    start = 0 if sniffed.dicom_has_preamble else sniffed.dicom_start
    try:
        ds = pydicom.dcmread(
            _DicomStream(data, start), defer_size=_DICOM_DEFER_BYTES, force=not sniffed.dicom_has_preamble
        )
    except Exception as e:  # pydicom raises many types for malformed files
        raise ImageError("corrupt", f"The DICOM file could not be read ({type(e).__name__}).") from e
    try:
        _name_bare_encoding(ds)
        return _dicom_to_xray(ds, data, start)
    except ImageError:
        raise
    except Exception as e:  # elements are parsed lazily: a damaged one fails here, with any type
        # Only the type is shown: a message could quote element values.
        raise ImageError("corrupt", f"The DICOM file has damaged image elements ({type(e).__name__}).") from e


def _name_bare_encoding(ds: Any) -> None:
    """A data set without a File Meta header names no transfer syntax: record the uncompressed one
    pydicom read it in, so that its pixels can be decoded."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if getattr(ds, "file_meta", None) and "TransferSyntaxUID" in ds.file_meta:
        return
    implicit, little = ds.original_encoding
    if not getattr(ds, "file_meta", None):
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    )


def _native_view(ds: Any, data: bytes, rows: int, cols: int, start: int) -> np.ndarray | None:
    """Uncompressed little-endian 16-bit single-frame unsigned gray pixels, as a zero-copy view of
    the upload's bytes (bits above BitsStored still set); None for anything else."""
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    syntax = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) else None
    if syntax not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        return None
    if (ds.get("BitsAllocated"), ds.get("SamplesPerPixel", 1), ds.get("PixelRepresentation", 0)) != (
        16,
        1,
        0,
    ):
        return None
    if int(ds.get("NumberOfFrames", 1) or 1) != 1 or rows < 1 or cols < 1:
        return None
    element = ds.get_item("PixelData", keep_deferred=True)
    offset, length = getattr(element, "value_tell", None), getattr(element, "length", None)
    if offset is not None:
        offset += start
    if offset is None or length is None or length < rows * cols * 2 or offset + rows * cols * 2 > len(data):
        return None
    return np.frombuffer(data, dtype="<u2", count=rows * cols, offset=offset).reshape(rows, cols)


def _dicom_to_xray(ds: Any, data: bytes, start: int) -> XrayImage:
    """Pixels through the modality LUT and VOI window, MONOCHROME1 inverted; patient fields untouched."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if "PixelData" not in ds:
        raise ImageError("no_pixels", "The DICOM file holds no image.")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows * cols > MAX_PIXELS:
        raise ImageError("too_large", f"The image has too many pixels (limit {MAX_PIXELS:,}).")
    bits = int(ds.get("BitsAllocated", 16))
    view = _native_view(ds, data, rows, cols, start)
    if view is not None:
        # Read in place from the upload: only the 8-bit result (and one band) is allocated.
        _check_budget(cols, rows, 1, f"{bits}-bit DICOM")
        stored = int(ds.get("BitsStored", 16))
        mask = np.uint16((1 << stored) - 1) if stored < 16 else None
        return _dicom_values_to_xray(ds, view, mask, apply_modality_lut, apply_voi_lut)
    # Otherwise pydicom decodes: the file's pixel bytes and the decoded array, plus the 8-bit result.
    _check_budget(cols, rows, 2 * math.ceil(bits / 8) + 1, f"{bits}-bit DICOM")
    try:
        raw = ds.pixel_array
    except Exception as e:
        syntax = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) else None
        if syntax is None or not syntax.is_compressed:
            # Uncompressed pixels that cannot be read: the file is cut short or damaged.
            raise ImageError(
                "corrupt",
                "The DICOM file is damaged or truncated: its image data is shorter than its header "
                "says. Copy or export it again from the X-ray system.",
            ) from e
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
    del ds.PixelData  # the decoded array is all we need: free the file's copy of the pixels
    return _dicom_values_to_xray(ds, raw, None, apply_modality_lut, apply_voi_lut)


def _dicom_values_to_xray(
    ds: Any, raw: np.ndarray, mask: np.uint16 | None, apply_modality_lut: Any, apply_voi_lut: Any
) -> XrayImage:
    """Stored values (masked to BitsStored as pydicom does) -> modality LUT -> VOI -> 8-bit, in bands."""
    windowed = "WindowCenter" in ds or "VOILUTSequence" in ds
    rows, cols = raw.shape

    def transformed(block: np.ndarray) -> np.ndarray:
        if mask is not None:
            block = block & mask
        values = apply_modality_lut(block, ds)
        if windowed:
            values = apply_voi_lut(values, ds)
        return np.asarray(values, dtype=np.float64)

    # Both LUTs work pixel by pixel, so a band of rows at a time gives exactly the whole-image result
    # without a full-size float64 copy (8 bytes a pixel: 155 MB for a 4400 x 4400 film).
    step = max(1, _CHUNK_PIXELS // max(1, cols))
    lo, hi = math.inf, -math.inf
    for top in range(0, rows, step):
        band = transformed(raw[top : top + step])
        lo, hi = min(lo, float(band.min())), max(hi, float(band.max()))
    pixels = np.empty(raw.shape, dtype=np.uint8)
    for top in range(0, rows, step):
        pixels[top : top + step] = _stretch_with(transformed(raw[top : top + step]), lo, hi)
    if ds.get("PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        log.info("DICOM is MONOCHROME1: inverting so that bone is bright")
        np.subtract(255, pixels, out=pixels)
    return XrayImage(pixels, "DICOM", 0.0)
