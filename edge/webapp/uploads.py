"""Checking an upload before it is scored: the file field, its name's extension, the case reference.

Every refusal is an `UploadError` with an HTTP status, a stable code and a message a clinic user can
act on. The uploaded file name is only looked at for its extension: it is never stored, logged,
echoed or used to name a file, because it may hold a patient's name or a path trick.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask import Request

from edge.preprocess import ImageError

FILE_FIELD = "file"
CASE_REF_FIELD = "case_ref"
CASE_REF_MAX = 64
CASE_REF_RULE = f"letters A-Z, digits, space and . _ - / (at most {CASE_REF_MAX} characters)"
_CASE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._/-]*$")

#: File name extension -> the format its content must have. No extension is fine (DICOM often has none).
EXTENSION_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".dcm": "DICOM", ".dicom": "DICOM"}
ACCEPTED_EXTENSIONS = ", ".join(EXTENSION_FORMATS)

#: ImageError reason -> HTTP status. 415: we do not take this kind of file; 422: it is broken.
_IMAGE_ERROR_STATUS = {
    "empty": 400,
    "not_an_image": 415,
    "unsupported_format": 415,
    "unsupported_dicom": 415,
    "corrupt": 422,
    "no_pixels": 422,
    "too_large": 422,
}


class UploadError(ValueError):
    """An upload the kiosk refuses; nothing was scored, stored or written."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def from_image_error(cls, error: ImageError) -> UploadError:
        return cls(_IMAGE_ERROR_STATUS.get(error.reason, 422), error.reason, str(error))


@dataclass(frozen=True)
class Upload:
    """A checked upload: the file's bytes and the optional case reference."""

    data: bytes
    case_ref: str | None


def read_upload(request: Request) -> Upload:
    """Check the request's file and case reference; raise UploadError naming what to fix."""
    if _form_unreadable(request):
        raise UploadError(
            400,
            "unreadable_form",
            "The upload could not be read: send multipart/form-data with UTF-8 field and file names.",
        )
    case_ref = check_case_ref(request.form.get(CASE_REF_FIELD, ""))
    # The page has two pickers (file, camera) under one name: take the one that was used.
    chosen = [storage for storage in request.files.getlist(FILE_FIELD) if storage.filename]
    storage = chosen[0] if chosen else request.files.get(FILE_FIELD)
    if storage is None:
        raise UploadError(
            400, "missing_file", f"No file was sent: attach the X-ray in the form field '{FILE_FIELD}'."
        )
    expected_format = _format_from_name(storage.filename or "")
    data = storage.stream.read()
    if not data:
        if not storage.filename:
            raise UploadError(400, "empty", "Choose an X-ray image first.")
        raise UploadError(400, "empty", "The file is empty.")
    actual_format = sniff_format(data)
    if expected_format and actual_format and expected_format != actual_format:
        raise UploadError(
            415,
            "extension_mismatch",
            f"The file's name says {expected_format} but its content is {actual_format}; "
            "rename it or export it again.",
        )
    return Upload(data, case_ref)


def check_case_ref(raw: str) -> str | None:
    """The stripped case reference, None when blank; UploadError when it breaks the rule."""
    value = raw.strip()
    if not value:
        return None
    if len(value) > CASE_REF_MAX:
        raise UploadError(
            400, "bad_case_ref", f"The case reference is {len(value)} characters long; use {CASE_REF_RULE}."
        )
    if not _CASE_REF.match(value):
        raise UploadError(
            400,
            "bad_case_ref",
            f"The case reference has characters that are not allowed; use {CASE_REF_RULE}. "
            "Never enter a patient's name.",
        )
    return value


def _form_unreadable(request: Request) -> bool:
    """Werkzeug drops a whole multipart body it cannot parse (e.g. a non-UTF-8 file name) silently."""
    return (
        request.mimetype == "multipart/form-data"
        and bool(request.content_length)
        and not request.form
        and not request.files
    )


def sniff_format(data: bytes) -> str | None:
    """JPEG, PNG or DICOM from the file's magic bytes; None when it is none of them."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[128:132] == b"DICM":
        return "DICOM"
    return None


def _format_from_name(filename: str) -> str | None:
    """The format an extension promises; None without one; UploadError for any other extension."""
    base = re.split(r"[/\\]", filename)[-1]
    stem, dot, extension = base.rpartition(".")
    if not dot or not stem:
        return None
    suffix = f".{extension.lower()}"
    if suffix not in EXTENSION_FORMATS:
        shown = suffix if len(suffix) <= 10 and suffix.isascii() and suffix.isprintable() else "this type"
        raise UploadError(
            415, "bad_extension", f"Files ending in {shown} are not accepted; use {ACCEPTED_EXTENSIONS}."
        )
    return EXTENSION_FORMATS[suffix]
