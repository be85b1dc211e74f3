"""The catalogue of bad uploads: each must get its 4xx and message, and change nothing on the kiosk.

Every case is a raw HTTP body and content type, so the same catalogue drives the Flask test client
and a real waitress server. `multipart` builds bodies by hand because some cases (non-UTF-8 names)
cannot be made with a well-behaved client.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, SecondaryCaptureImageStorage, generate_uid

from edge.kiosk_settings import MAX_UPLOAD_BYTES
from tests.tiny_bundle import dicom_bytes, xray_bytes

BOUNDARY = "pneumoedge-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(parts: list[tuple[bytes, bytes | None, bytes]]) -> bytes:
    """A multipart/form-data body from (field name, file name or None, content) parts."""
    out = io.BytesIO()
    for name, filename, content in parts:
        out.write(f"--{BOUNDARY}\r\n".encode())
        disposition = b'Content-Disposition: form-data; name="' + name + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        out.write(disposition + b"\r\n")
        if filename is not None:
            out.write(b"Content-Type: application/octet-stream\r\n")
        out.write(b"\r\n" + content + b"\r\n")
    out.write(f"--{BOUNDARY}--\r\n".encode())
    return out.getvalue()


def file_body(content: bytes, filename: bytes = b"xray.jpg", case_ref: bytes | None = None) -> bytes:
    parts: list[tuple[bytes, bytes | None, bytes]] = []
    if case_ref is not None:
        parts.append((b"case_ref", None, case_ref))
    parts.append((b"file", filename, content))
    return multipart(parts)


@cache
def good_jpeg() -> bytes:
    return xray_bytes(seed=11, width=300, height=360)


@cache
def good_png() -> bytes:
    return xray_bytes(seed=12, fmt="PNG", width=300, height=360)


@cache
def bomb_png() -> bytes:
    """56 megapixels of black: 54 kB on disk, 56 MB decoded, over the 50 MP limit."""
    buffer = io.BytesIO()
    Image.new("L", (8000, 7000)).save(buffer, "PNG")
    return buffer.getvalue()


def gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (300, 300), 128).save(buffer, "GIF")
    return buffer.getvalue()


@cache
def small_dicom() -> bytes:
    """A 200 x 180 uncompressed 16-bit DICOM that passes the quality gate's decoding."""
    rng = np.random.default_rng(5)
    return dicom(rng.integers(0, 4096, size=(200, 180)))


def compressed_dicom() -> bytes:
    """A JPEG 2000 DICOM whose frame no decoder the kiosk has can read."""
    return dicom_bytes(np.full((200, 180), 2000, dtype=np.uint16), transfer_syntax=JPEG2000Lossless)


def dicom(pixels: np.ndarray | None, patient_name: str = "Doe^Jane") -> bytes:
    """A small DICOM file carrying patient fields; without `pixels` it has no image."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = patient_name
    ds.PatientID = "PID-123456"
    ds.PatientBirthDate = "20200101"
    ds.Modality = "CR"
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.PixelData = (pixels.astype(np.uint16) * 16).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@dataclass(frozen=True)
class BadUpload:
    """One refused upload: the body to send and what the user must be told."""

    id: str
    status: int
    code: str
    message: str  # a part of the message the user sees
    make_body: Callable[[], bytes]  # built when sent: some bodies are big
    content_type: str = MULTIPART
    detail: str | None = None  # a part of the technical detail beside it, for a file the core refused

    @property
    def body(self) -> bytes:
        return self.make_body()


def _jpeg_as(filename: bytes = b"xray.jpg", case_ref: bytes | None = None) -> Callable[[], bytes]:
    return lambda: file_body(good_jpeg(), filename, case_ref)


CATALOGUE: list[BadUpload] = [
    BadUpload(
        "missing-field",
        400,
        "missing_file",
        "No file was sent: attach the X-ray in the form field 'file'.",
        lambda: multipart([(b"case_ref", None, b"A-1")]),
    ),
    BadUpload(
        "no-file-chosen",
        400,
        "empty",
        "Choose an X-ray image first.",
        lambda: multipart([(b"file", b"", b"")]),
    ),
    BadUpload("empty-file", 400, "empty", "The file is empty.", lambda: file_body(b"")),
    BadUpload(
        "text-file",
        415,
        "not_an_image",
        "This file is not an X-ray image. Choose the X-ray file itself (JPEG, PNG or DICOM)",
        lambda: file_body(b"Patient notes: not an image at all\n" * 20),
        detail="The file is not a JPEG, PNG or DICOM image.",
    ),
    BadUpload(
        "gif",
        415,
        "unsupported_format",
        "The kiosk cannot open this kind of picture. Export the X-ray again as JPEG, PNG or DICOM",
        lambda: file_body(gif(), b"xray"),
        detail="GIF files are not accepted",
    ),
    BadUpload(
        "truncated-jpeg",
        422,
        "corrupt",
        "The file is damaged or incomplete. Copy or export the X-ray again",
        lambda: file_body(good_jpeg()[: len(good_jpeg()) // 2]),
        detail="The image file is damaged or truncated",
    ),
    BadUpload(
        "decompression-bomb",
        422,
        "too_large",
        "The image is too big for the kiosk to open. Export the X-ray again at a smaller size",
        lambda: file_body(bomb_png(), b"bomb.png"),
        detail="The image has too many pixels (limit 50,000,000).",
    ),
    BadUpload(
        "over-size-limit",
        413,
        "too_large",
        "The upload is larger than the 40 MB limit.",
        lambda: file_body(b"\xff\xd8\xff" + bytes(MAX_UPLOAD_BYTES), b"huge.jpg"),
    ),
    BadUpload(
        "wrong-extension",
        415,
        "bad_extension",
        "The kiosk does not take this kind of file. Load the X-ray as a JPEG, PNG or DICOM file.",
        _jpeg_as(b"xray.exe"),
        detail="Files ending in .exe are not accepted; use .jpg, .jpeg, .png, .dcm, .dicom.",
    ),
    BadUpload(
        "content-mismatch",
        415,
        "extension_mismatch",
        "The file's name does not match what is inside it.",
        lambda: file_body(good_png(), b"xray.jpg"),
        detail="The file's name says JPEG but its content is PNG",
    ),
    BadUpload(
        "path-trick-bad-extension",
        415,
        "bad_extension",
        "The kiosk does not take this kind of file.",
        _jpeg_as(b"../../../../etc/cron.daily/evil.sh"),
        detail="Files ending in .sh are not accepted",
    ),
    BadUpload(
        "long-case-ref",
        400,
        "bad_case_ref",
        "The case reference is 65 characters long",
        _jpeg_as(case_ref=b"A" * 65),
    ),
    BadUpload(
        "huge-case-ref",
        413,
        "form_too_large",
        "The form is too big: it has more than 1000 parts or a text field over 500 kB.",
        _jpeg_as(case_ref=b"A" * 600_000),  # over Werkzeug's 500 kB for text fields
    ),
    BadUpload(
        "1100-part-form",
        413,
        "form_too_large",
        "The form is too big: it has more than 1000 parts",  # not the case reference's fault
        lambda: multipart([(b"note", None, b"x")] * 1099 + [(b"file", b"xray.jpg", good_jpeg())]),
    ),
    BadUpload(
        "second-file",
        400,
        "too_many_files",
        "2 files were sent in one upload; send one X-ray at a time",
        lambda: multipart([(b"file", b"a.jpg", good_jpeg()), (b"file", b"b.jpg", good_jpeg())]),
    ),
    BadUpload(
        "second-file-other-field",
        400,
        "too_many_files",
        "2 files were sent in one upload",
        lambda: multipart([(b"file", b"a.jpg", good_jpeg()), (b"other", b"b.png", good_png())]),
    ),
    BadUpload(
        "second-case-ref",
        400,
        "bad_case_ref",
        "2 case references were sent; send one.",
        lambda: multipart(
            [
                (b"case_ref", None, b"WARD3-1"),
                (b"case_ref", None, b"WARD3-2"),
                (b"file", b"a.jpg", good_jpeg()),
            ]
        ),
    ),
    BadUpload(
        "empty-multipart",
        400,
        "missing_file",
        "No file was sent: attach the X-ray in the form field 'file'.",
        lambda: multipart([]),
    ),
    BadUpload(
        "name-case-ref",
        400,
        "bad_case_ref",
        "The case reference looks like a person's name. Type only the clinic's register number, "
        "like OPD-2026-00123",
        _jpeg_as(case_ref=b"JANE DOE 17"),
    ),
    BadUpload(
        "name-and-birth-date-case-ref",
        400,
        "bad_case_ref",
        "The case reference looks like a date of birth",
        _jpeg_as(case_ref=b"JANE DOE DOB 2019-05-04"),
    ),
    BadUpload(
        "date-case-ref",
        400,
        "bad_case_ref",
        "looks like a date of birth. Type only the clinic's register number",
        _jpeg_as(case_ref=b"OPD 04/05/2019"),
    ),
    BadUpload(
        "truncated-dicom",
        422,
        "corrupt",
        "The file is damaged or incomplete.",
        lambda: file_body(small_dicom()[:-5000], b"study.dcm"),
        detail="The DICOM file is damaged or truncated: its image data is shorter than its header says.",
    ),
    BadUpload(
        "compressed-dicom",
        415,
        "unsupported_dicom",
        "The kiosk cannot open this kind of DICOM file. Export the X-ray again",
        lambda: file_body(compressed_dicom(), b"study.dcm"),
        detail="The DICOM image could not be decoded (transfer syntax JPEG 2000",
    ),
    BadUpload(
        "markup-case-ref",
        400,
        "bad_case_ref",
        "The case reference has characters that are not allowed",
        _jpeg_as(case_ref=b"<script>alert(1)</script>"),
    ),
    BadUpload(
        "non-utf8-case-ref",
        400,
        "bad_case_ref",
        "The case reference has characters that are not allowed",
        _jpeg_as(case_ref=b"\xff\xfe\xfa\x00junk"),
    ),
    BadUpload(
        "non-utf8-file-name",
        400,
        "unreadable_form",
        "The upload could not be read",
        _jpeg_as(filename=b"\xff\xfe\xfa.jpg"),
    ),
    BadUpload(
        "not-multipart",
        400,
        "missing_file",
        "No file was sent",
        good_jpeg,
        "image/jpeg",
    ),
    BadUpload(
        "dicom-without-image",
        422,
        "no_pixels",
        "The DICOM file holds no picture. Export the X-ray image itself",
        lambda: file_body(dicom(None), b"study.dcm"),
        detail="The DICOM file holds no image.",
    ),
]
