"""The preprocessing contract on odd files: every one decodes correctly or fails with a clear reason."""

from __future__ import annotations

import contextlib
import io
import logging
import struct
import zlib

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageOps
from pydicom.uid import JPEG2000Lossless

from edge import preprocess
from edge.preprocess import MAX_PIXELS, ImageError, XrayImage, load_model_input, load_xray, to_model_input
from lab.synthetic import encode, synthetic_xray
from tests.tiny_bundle import PATIENT, dicom_bytes


def save(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height gray pixels, with almost no data: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def ramp12(rows: int = 64, cols: int = 80) -> np.ndarray:
    """A left-to-right 0..4095 ramp: column index tells the raw value."""
    return np.tile(np.linspace(0, 4095, cols), (rows, 1)).astype(np.uint16)


# --- failures with a reason -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"hello, this is a text file\n" * 20, "not_an_image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "not_an_image"),
    ],
)
def test_unusable_bytes_name_a_reason(data, reason):
    with pytest.raises(ImageError) as caught:
        load_xray(data)
    assert caught.value.reason == reason


def test_truncated_jpeg_is_corrupt():
    data = encode(synthetic_xray(1, 400, 480), "JPEG")
    with pytest.raises(ImageError, match="damaged or truncated") as caught:
        load_xray(data[: len(data) // 2])
    assert caught.value.reason == "corrupt"


def test_png_with_a_flipped_byte_is_corrupt():
    data = bytearray(encode(synthetic_xray(1, 300, 300), "PNG"))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(ImageError) as caught:
        load_xray(bytes(data))
    assert caught.value.reason == "corrupt"


def test_gif_is_refused_with_the_accepted_formats():
    data = save(Image.fromarray(synthetic_xray(2, 300, 300)), "GIF")
    with pytest.raises(ImageError, match="JPEG, PNG or DICOM") as caught:
        load_xray(data)
    assert caught.value.reason == "unsupported_format"


@pytest.mark.parametrize("side", [8000, 20000])  # 64 MP: our limit; 400 MP: also Pillow's own
def test_decompression_bomb_is_refused_before_decoding(side):
    assert side * side > MAX_PIXELS
    with pytest.raises(ImageError, match=r"too many pixels \(limit 50,000,000\)") as caught:
        load_xray(png_header_only(side, side))
    assert caught.value.reason == "too_large"


def test_pillow_global_limit_is_left_alone():
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError):
        load_xray(png_header_only(8000, 8000))
    assert before == Image.MAX_IMAGE_PIXELS


# --- odd but valid rasters ----------------------------------------------------------------------


def test_gray_jpeg_round_trips_at_full_resolution():
    image = load_xray(encode(synthetic_xray(3, 1000, 1200), "JPEG"))
    assert (image.height, image.width) == (1200, 1000)
    assert image.pixels.dtype == np.uint8
    assert image.source_format == "JPEG"
    assert image.colourfulness == 0.0


def test_16_bit_png_is_stretched_to_8_bits_keeping_order():
    wide = np.tile(np.linspace(1000, 3000, 256), (32, 1)).astype(np.uint16)
    image = load_xray(encode(wide, "PNG"))
    assert image.pixels.min() == 0
    assert image.pixels.max() == 255
    assert np.all(np.diff(image.pixels[0].astype(int)) >= 0)


def test_rgba_flattens_transparency_onto_black():
    rgba = np.zeros((240, 240, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[:, :120, 3] = 255  # left half opaque, right half transparent
    image = load_xray(encode(rgba, "PNG"))
    assert image.pixels[:, :120].mean() == pytest.approx(200, abs=1)
    assert image.pixels[:, 120:].max() == 0
    assert image.colourfulness == 0.0


def test_palette_png_keeps_its_gray_levels():
    gray = synthetic_xray(4, 300, 360)
    palette = Image.fromarray(gray).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    image = load_xray(save(palette, "PNG"))
    assert np.abs(image.pixels.astype(int) - gray.astype(int)).mean() < 4
    assert image.colourfulness < 1.0


def test_cmyk_jpeg_decodes_to_gray():
    rgb = Image.fromarray(np.stack([synthetic_xray(5, 300, 360)] * 3, axis=2))
    image = load_xray(save(rgb.convert("CMYK"), "JPEG", quality=95))
    assert image.pixels.shape == (360, 300)
    assert image.pixels.std() > 10


def test_colour_is_measured_before_going_gray():
    rgb = np.zeros((300, 300, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 120, 40
    assert load_xray(encode(rgb, "PNG")).colourfulness > 50


def test_exif_orientation_is_honoured():
    pixels = np.zeros((200, 300), dtype=np.uint8)  # landscape as stored
    pixels[:20, :20] = 255  # marker at the stored top-left
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    image = load_xray(save(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert (image.height, image.width) == (300, 200)  # upright is portrait
    assert image.pixels[:20, -20:].mean() > 200  # the marker is now top-right


def test_tiny_image_still_becomes_a_model_input():
    tensor = load_model_input(encode(np.full((3, 2), 90, dtype=np.uint8), "PNG"), 224)
    assert tensor.shape == (224, 224, 1)
    assert tensor.dtype == np.uint8


def test_model_input_is_pillow_bicubic_squash():
    gray = synthetic_xray(6, 500, 700)
    expected = np.asarray(Image.fromarray(gray).resize((224, 224), Image.Resampling.BICUBIC))
    tensor = load_model_input(encode(gray, "PNG"), 224)
    np.testing.assert_array_equal(tensor[..., 0], expected)


def test_224_images_pass_through_unchanged():
    gray = synthetic_xray(7, 224, 224)
    np.testing.assert_array_equal(load_model_input(encode(gray, "PNG"), 224)[..., 0], gray)


# --- DICOM --------------------------------------------------------------------------------------


def test_dicom_monochrome2_keeps_bright_bone_bright():
    image = load_xray(dicom_bytes(ramp12()))
    assert image.source_format == "DICOM"
    assert image.pixels[:, 0].max() == 0
    assert image.pixels[:, -1].min() == 255


def test_dicom_monochrome1_is_inverted(caplog):
    with caplog.at_level(logging.INFO, logger="edge.preprocess"):
        image = load_xray(dicom_bytes(ramp12(), photometric="MONOCHROME1"))
    assert image.pixels[:, 0].min() == 255
    assert image.pixels[:, -1].max() == 0
    assert "MONOCHROME1" in caplog.text


def test_dicom_rescale_then_window_are_applied():
    # real = 2 * raw - 1000; window 800..1200 on real values <=> raw 900..1100.
    raw = np.tile(np.arange(0, 2048, 8), (16, 1)).astype(np.uint16)
    image = load_xray(
        dicom_bytes(raw, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=1000, WindowWidth=400)
    )
    columns = raw[0]
    assert image.pixels[:, columns < 880].max() == 0
    assert image.pixels[:, columns > 1120].min() == 255
    middle = image.pixels[0, (columns > 920) & (columns < 1080)]
    assert middle.min() > 0
    assert middle.max() < 255


def test_dicom_with_an_impossible_window_is_corrupt():
    with pytest.raises(ImageError, match="damaged image elements") as caught:
        load_xray(dicom_bytes(ramp12(), WindowCenter=100, WindowWidth=0))
    assert caught.value.reason == "corrupt"


@pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")  # pydicom on damaged UIDs
@pytest.mark.parametrize("kind", ["JPEG", "PNG", "DICOM"])
def test_random_damage_only_ever_raises_image_error(kind):
    base = dicom_bytes(ramp12()) if kind == "DICOM" else encode(synthetic_xray(9, 200, 240), kind)
    rng = np.random.default_rng(0)
    for _ in range(150):
        damaged = bytearray(base)
        for position in rng.integers(0, len(base), size=int(rng.integers(1, 9))):
            damaged[position] = int(rng.integers(0, 256))
        with contextlib.suppress(ImageError):  # anything else fails the test
            load_xray(bytes(damaged))


def test_compressed_dicom_that_cannot_be_decoded_says_how_to_fix_it():
    data = dicom_bytes(ramp12(), transfer_syntax=JPEG2000Lossless)
    with pytest.raises(ImageError, match=r"JPEG 2000.*export it uncompressed") as caught:
        load_xray(data)
    assert caught.value.reason == "unsupported_dicom"


def test_dicom_without_pixels_is_refused():
    from pydicom import dcmread

    ds = dcmread(io.BytesIO(dicom_bytes(ramp12())))
    del ds.PixelData
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(ImageError) as caught:
        load_xray(buffer.getvalue())
    assert caught.value.reason == "no_pixels"


def test_truncated_dicom_is_corrupt_without_naming_the_patient():
    data = dicom_bytes(ramp12())
    with pytest.raises(ImageError) as caught:
        load_xray(data[:200])
    assert PATIENT not in str(caught.value)


def test_dicom_patient_name_never_reaches_the_result_or_the_logs(caplog):
    with caplog.at_level(logging.DEBUG):
        image = load_xray(dicom_bytes(ramp12(), photometric="MONOCHROME1"))
        with pytest.raises(ImageError) as caught:
            load_xray(dicom_bytes(ramp12(), transfer_syntax=JPEG2000Lossless))
    for text in (repr(image), str(caught.value), caplog.text):
        assert "Doe" not in text
        assert "424242" not in text


def test_to_model_input_refuses_a_non_gray_array():
    from edge.preprocess import XrayImage

    with pytest.raises(ValueError, match="2-D uint8"):
        to_model_input(XrayImage(np.zeros((4, 4, 3), dtype=np.uint8), "PNG", 0.0), 224)


# --- memory: a budget checked from the header, reduction while decoding, one decode per upload ---


def reference_model_input(data: bytes, size: int = 224) -> np.ndarray:
    """The model input as the training images were made: a full-resolution decode, gray, bicubic squash."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        gray = np.asarray(ImageOps.exif_transpose(img).convert("L"), dtype=np.uint8)
    return to_model_input(XrayImage(gray, "JPEG", 0.0), size)


def test_a_2000_x_1700_jpeg_gives_the_same_model_input_as_a_full_decode():
    data = encode(
        np.stack([synthetic_xray(seed=4, width=2000, height=1700)] * 3, axis=-1), "JPEG", quality=90
    )
    image = load_xray(data)
    assert (image.width, image.height) == (2000, 1700)  # within the budget: decoded at full size
    diff = np.abs(load_model_input(data, 224).astype(int) - reference_model_input(data).astype(int))
    assert diff.max() <= 2


def test_a_jpeg_over_the_budget_is_reduced_while_decoding_and_keeps_its_model_input():
    pixels = synthetic_xray(seed=5, width=5200, height=4400)
    data = encode(np.stack([pixels] * 3, axis=-1), "JPEG", quality=90)  # RGB: 22.9 MP x 8 bytes > budget
    image = load_xray(data)
    assert max(image.width, image.height) >= preprocess.MIN_REDUCED_LONG_SIDE
    assert (image.width, image.height) == (2600, 2200)  # libjpeg decoded it at 1/2 scale
    diff = np.abs(to_model_input(image, 224).astype(int) - reference_model_input(data).astype(int))
    assert diff.max() <= 2


@pytest.mark.parametrize(
    ("mode", "shape", "kind"),
    [("I;16", (7000, 7000), "16-bit gray"), ("RGB", (7000, 7000, 3), "colour")],
)
def test_an_image_over_the_memory_budget_is_refused_from_its_header(mode, shape, kind):
    pixels = np.zeros(shape, dtype=np.uint16 if mode == "I;16" else np.uint8)
    data = save(Image.fromarray(pixels), "PNG")
    del pixels
    with pytest.raises(ImageError, match=f"7000 x 7000 pixels of {kind} needs about") as caught:
        load_xray(data)
    assert caught.value.reason == "too_large"
    assert "Export the X-ray again at a lower resolution" in str(caught.value)


def test_a_large_16_bit_dicom_over_the_budget_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(preprocess, "DECODE_BUDGET_BYTES", 1_000)  # 64 x 80 needs 5,120 bytes
    with pytest.raises(ImageError, match="16-bit DICOM") as caught:
        load_xray(dicom_bytes(ramp12(64, 80)))
    assert caught.value.reason == "too_large"


def test_16_bit_png_converted_in_bands_equals_the_whole_image_conversion(monkeypatch):
    monkeypatch.setattr(preprocess, "_CHUNK_PIXELS", 1000)  # many bands
    raw = np.random.default_rng(1).integers(300, 60000, size=(157, 211)).astype(np.uint16)
    image = load_xray(save(Image.fromarray(raw), "PNG"))
    np.testing.assert_array_equal(image.pixels, preprocess._stretch_to_uint8(raw.astype(np.float64)))


def test_dicom_converted_in_bands_equals_the_whole_image_conversion(monkeypatch):
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    raw = np.random.default_rng(2).integers(0, 4096, size=(131, 97)).astype(np.uint16)
    elements = {"RescaleSlope": 2, "RescaleIntercept": -1000, "WindowCenter": 3000, "WindowWidth": 5000}
    data = dicom_bytes(raw, **elements)
    ds = pydicom.dcmread(io.BytesIO(data))
    whole = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    expected = preprocess._stretch_to_uint8(np.asarray(whole, dtype=np.float64))
    monkeypatch.setattr(preprocess, "_CHUNK_PIXELS", 500)
    np.testing.assert_array_equal(load_xray(data).pixels, expected)


def test_colourfulness_is_measured_as_before():
    rgb = np.random.default_rng(3).integers(0, 256, size=(90, 70, 3)).astype(np.uint8)
    image = load_xray(encode(rgb, "PNG"))
    wide = rgb.astype(np.int16)
    r, g, b = wide[..., 0], wide[..., 1], wide[..., 2]
    before = (np.abs(r - g).mean() + np.abs(g - b).mean() + np.abs(r - b).mean()) / 3.0
    assert image.colourfulness == pytest.approx(before, rel=1e-9)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_uncompressed_dicom_read_in_place_equals_pydicoms_decoding(monkeypatch, photometric):
    """The zero-copy path masks bits above BitsStored exactly as pydicom's pixel_array does."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    raw = np.random.default_rng(4).integers(0, 65536, size=(83, 61)).astype(np.uint16)  # high bits set
    data = dicom_bytes(
        raw, photometric, RescaleSlope=3, RescaleIntercept=-20, WindowCenter=2000, WindowWidth=3000
    )
    ds = pydicom.dcmread(io.BytesIO(data))
    whole = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    expected = preprocess._stretch_to_uint8(np.asarray(whole, dtype=np.float64))
    if photometric == "MONOCHROME1":
        expected = 255 - expected
    monkeypatch.setattr(preprocess, "_DICOM_DEFER_BYTES", 256)  # this small file's pixels stay deferred
    monkeypatch.setattr(preprocess, "_CHUNK_PIXELS", 700)
    used: list[bool] = []
    real_view = preprocess._native_view

    def spy(*args: object) -> np.ndarray | None:
        view = real_view(*args)
        used.append(view is not None)
        return view

    monkeypatch.setattr(preprocess, "_native_view", spy)
    np.testing.assert_array_equal(load_xray(data).pixels, expected)
    assert used == [True]  # read in place, not through pydicom
