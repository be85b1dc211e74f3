"""Checking an upload before it is scored: the form, its one file, the file's name, the case reference.

Every refusal is an `UploadError` with an HTTP status, a stable code and a message a clinic user can
act on; a file the core refuses is told in its plain words, its technical message kept as `detail`.
The uploaded file name is only looked at for its suffix: it is never stored, logged, echoed or used
to name a file, because it may hold a patient's name or a path trick. Which files are X-rays, and
the codes of refusals and their plain words, live in `edge.formats`; case references in `case_refs`.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Request
from flask_babel import gettext
from werkzeug.datastructures import FileStorage

from edge import formats
from edge.preprocess import ImageError
from edge.webapp.display.i18n import translated
from edge.webapp.intake import case_refs
from edge.webapp.intake.case_refs import CASE_REF_MAX

__all__ = ["CASE_REF_FIELD", "CASE_REF_MAX", "FILE_FIELD", "Upload", "UploadError", "read_upload"]

FILE_FIELD = "file"
CASE_REF_FIELD = "case_ref"


class UploadError(ValueError):
    """An upload the kiosk refuses; nothing was scored, stored or written.

    `message` is for the person at the kiosk; `detail`, when there is one, for the technician.
    """

    def __init__(self, status: int, code: str, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail

    @classmethod
    def from_image_error(cls, error: ImageError | formats.FormatError) -> UploadError:
        """The core's refusal in translated plain words, with its English technical message as detail."""
        return cls.refused_file(error.reason, str(error))

    @classmethod
    def refused_file(cls, reason: str, detail: str | None = None) -> UploadError:
        """A file refused for one of edge.formats' codes, told in the page's language."""
        status = formats.REFUSAL_STATUS.get(reason, 422)
        return cls(status, reason, translated(formats.plain_words(reason)), detail)


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
            gettext(
                "The upload could not be read: send multipart/form-data with UTF-8 field and file names."
            ),
        )
    refs = request.form.getlist(CASE_REF_FIELD)
    if len(refs) > 1:  # like a second file: which one was meant cannot be guessed
        raise UploadError(
            400,
            "bad_case_ref",
            gettext("%(count)d case references were sent; send one.", count=len(refs)),
        )
    try:
        case_ref = case_refs.rules().check(request.form.get(CASE_REF_FIELD, ""))
    except case_refs.CaseRefError as e:
        raise UploadError(400, "bad_case_ref", str(e)) from e
    storage = _the_one_file(request)
    data = storage.stream.read()
    if not data:
        if not storage.filename:
            raise UploadError(400, "empty", gettext("Choose an X-ray image first."))
        raise UploadError.refused_file("empty")
    try:
        formats.check_name(storage.filename or "", formats.sniff(data))
    except formats.FormatError as e:
        raise UploadError.from_image_error(e) from e
    return Upload(data, case_ref)


def _the_one_file(request: Request) -> FileStorage:
    """The single file sent. The page has two pickers (file, camera) under one name, and a browser
    sends the unused one empty and unnamed: that one is not a file. Any other is refused, so that a
    second X-ray is never silently dropped."""
    chosen = [(field, storage) for field, storage in request.files.items(multi=True) if storage.filename]
    if len(chosen) > 1:
        raise UploadError(
            400,
            "too_many_files",
            gettext(
                "%(count)d files were sent in one upload; send one X-ray at a time, each in its own upload.",
                count=len(chosen),
            ),
        )
    storage = chosen[0][1] if chosen and chosen[0][0] == FILE_FIELD else request.files.get(FILE_FIELD)
    if storage is None:
        raise UploadError(
            400,
            "missing_file",
            gettext("No file was sent: attach the X-ray in the form field '%(field)s'.", field=FILE_FIELD),
        )
    return storage


def _form_unreadable(request: Request) -> bool:
    """Werkzeug drops a whole multipart body it cannot parse (e.g. a non-UTF-8 file name) silently.

    A body that is no more than the closing delimiter (with its line breaks) is a readable form
    with no parts: that upload is missing its file, not unreadable.
    """
    empty_form = len(f"--{request.mimetype_params.get('boundary', '')}--") + 4
    return (
        request.mimetype == "multipart/form-data"
        and (request.content_length or 0) > empty_form
        and not request.form
        and not request.files
    )
