"""The X-ray file formats PneumoEdge accepts, in one place: names, content sniffing, refusals.

The kiosk's upload page, its JSON API and `python -m edge score` all decide here which files are
X-rays (by name and by content), and `edge.preprocess` asks `sniff` which decoder to use, so a file
one of them accepts is never one another skips or calls by another name.

Content decides, names only confirm it: a file named .jpg must hold a JPEG. A file without a
suffix, or with one we do not know (PACS exports are often named after a DICOM UID such as
`1.2.840.113619.2.55.3`), is accepted when its content is DICOM, and without a suffix also when it
is a JPEG or PNG.

Each refusal has a code (REFUSAL_STATUS), a technical message for the technician (the exception's)
and plain words for the nurse (PLAIN_WORDS), which the kiosk shows translated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

JPEG, PNG, DICOM = "JPEG", "PNG", "DICOM"
ACCEPTED_FORMATS = (JPEG, PNG, DICOM)
#: File name suffix (lower case) -> the format its content must have.
SUFFIX_FORMATS = {".jpg": JPEG, ".jpeg": JPEG, ".png": PNG, ".dcm": DICOM, ".dicom": DICOM}
ACCEPTED_SUFFIXES = frozenset(SUFFIX_FORMATS)
ACCEPTED_SUFFIXES_TEXT = ", ".join(SUFFIX_FORMATS)
#: Enough of a file's start to sniff its format.
SNIFF_BYTES = 256

#: Refusal reason code -> HTTP status. 400: nothing usable was sent; 415: we do not take this kind
#: of file; 422: it is the right kind but broken, or too big to open. `edge.preprocess.ImageError`
#: raises the decoding ones; `FormatError` the naming ones; the CLI writes the code in its CSV.
REFUSAL_STATUS = {
    "empty": 400,
    "bad_extension": 415,
    "extension_mismatch": 415,
    "not_an_image": 415,
    "unsupported_format": 415,
    "unsupported_dicom": 415,
    "corrupt": 422,
    "no_pixels": 422,
    "too_large": 422,
}

#: What each refusal means to the nurse at the kiosk: what is wrong, then what to do next, without
#: the figures of the technical message (which stays for the technician, like quality.PLAIN_WORDS).
#: edge.webapp.display.i18n marks a copy for translation: this core knows no gettext.
PLAIN_WORDS: dict[str, str] = {
    "empty": "The file is empty. Copy the X-ray file again from the X-ray system, then load it again.",
    "bad_extension": (
        "The kiosk does not take this kind of file. Load the X-ray as a JPEG, PNG or DICOM file."
    ),
    "extension_mismatch": (
        "The file's name does not match what is inside it. Export the X-ray again from the X-ray "
        "system, then load the new file."
    ),
    "not_an_image": (
        "This file is not an X-ray image. Choose the X-ray file itself (JPEG, PNG or DICOM), not a "
        "document or a report."
    ),
    "unsupported_format": (
        "The kiosk cannot open this kind of picture. Export the X-ray again as JPEG, PNG or DICOM, "
        "then load it again."
    ),
    "unsupported_dicom": (
        "The kiosk cannot open this kind of DICOM file. Export the X-ray again from the X-ray system "
        "as a single uncompressed image, or as JPEG or PNG."
    ),
    "corrupt": (
        "The file is damaged or incomplete. Copy or export the X-ray again from the X-ray system, "
        "then load the new file."
    ),
    "no_pixels": (
        "The DICOM file holds no picture. Export the X-ray image itself from the X-ray system, then "
        "load it again."
    ),
    "too_large": (
        "The image is too big for the kiosk to open. Export the X-ray again at a smaller size, or as "
        "a JPEG, then load it again."
    ),
}
_UNKNOWN_REFUSAL = (
    "The kiosk cannot open this file. Load the X-ray again as a JPEG, PNG or DICOM file; if it is "
    "refused again, ask the technician."
)

_DICOM_PREFIX = b"DICM"
_DICOM_PREAMBLE = 128
#: Value representations an explicit-VR DICOM element may carry (PS3.5 6.2).
_DICOM_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW "
    b"PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)


class FormatError(ValueError):
    """A file refused for its name or kind; `reason` is one of REFUSAL_STATUS's codes."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def plain_words(reason: str) -> str:
    """The nurse's message for a refusal code; a code added without words still gets an honest one."""
    return PLAIN_WORDS.get(reason, _UNKNOWN_REFUSAL)


@dataclass(frozen=True)
class Sniffed:
    """What a file's first bytes say it is; for DICOM, where its data set starts."""

    format: str
    #: DICOM: 132 with the standard preamble and prefix, 4 with the prefix only, 0 for a bare data
    #: set (no File Meta header at all); always 0 for JPEG and PNG.
    dicom_start: int = 0

    @property
    def dicom_has_preamble(self) -> bool:
        return self.format == DICOM and self.dicom_start == _DICOM_PREAMBLE + len(_DICOM_PREFIX)


def sniff(data: bytes) -> Sniffed | None:
    """JPEG, PNG or DICOM (with or without its 128-byte preamble) from magic bytes; None otherwise."""
    if data.startswith(b"\xff\xd8\xff"):
        return Sniffed(JPEG)
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed(PNG)
    if data[_DICOM_PREAMBLE : _DICOM_PREAMBLE + 4] == _DICOM_PREFIX:
        return Sniffed(DICOM, _DICOM_PREAMBLE + 4)
    if data.startswith(_DICOM_PREFIX):
        return Sniffed(DICOM, 4)
    if _is_bare_dicom(data):
        return Sniffed(DICOM, 0)
    return None


def _is_bare_dicom(data: bytes) -> bool:
    """A data set without preamble or prefix: it starts with a group 0002 (File Meta) or 0008
    (identifying) element, little endian, in explicit VR or with a plausible implicit length."""
    if len(data) < 8 or data[:2] not in (b"\x02\x00", b"\x08\x00"):
        return False
    if data[4:6] in _DICOM_VRS:
        return True
    return int.from_bytes(data[4:8], "little") <= min(len(data) - 8, 1024)


def suffix_of(filename: str) -> str | None:
    """The lower-case suffix of the last path component ('.jpg'); None when there is none."""
    base = re.split(r"[/\\]", filename)[-1]
    stem, dot, extension = base.rpartition(".")
    return f".{extension.lower()}" if dot and stem else None


def check_name(filename: str, sniffed: Sniffed | None) -> None:
    """Refuse (FormatError) a name that does not fit the content.

    Content that is none of ours is left to the decoder, which says what it is (or is not).
    """
    suffix = suffix_of(filename)
    if suffix is None:
        return
    expected = SUFFIX_FORMATS.get(suffix)
    if expected is None:
        if sniffed is not None and sniffed.format == DICOM:
            return  # a DICOM named after its UID
        shown = suffix if len(suffix) <= 10 and suffix.isascii() and suffix.isprintable() else "this type"
        raise FormatError(
            "bad_extension", f"Files ending in {shown} are not accepted; use {ACCEPTED_SUFFIXES_TEXT}."
        )
    if sniffed is not None and sniffed.format != expected:
        raise FormatError(
            "extension_mismatch",
            f"The file's name says {expected} but its content is {sniffed.format}; "
            "rename it or export it again.",
        )


def is_candidate(filename: str, head: bytes) -> bool:
    """Should a folder scan pick this file up? Accepted suffixes always (a broken one is reported,
    not skipped); other names when their first bytes (`head`, SNIFF_BYTES of them) are DICOM, or,
    without any suffix, JPEG or PNG."""
    suffix = suffix_of(filename)
    if suffix in ACCEPTED_SUFFIXES:
        return True
    sniffed = sniff(head)
    if sniffed is None:
        return False
    return sniffed.format == DICOM or suffix is None
