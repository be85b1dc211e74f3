"""edge.formats: one answer, for the kiosk, the API and the CLI, to "is this an X-ray file?"."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from edge import formats
from edge.formats import DICOM, JPEG, PNG, FormatError, Sniffed
from edge.preprocess import ImageError, load_xray
from lab.synthetic import encode, synthetic_xray
from tests.tiny_bundle import dicom_bytes

FILM = synthetic_xray(seed=3, width=200, height=240)


@pytest.fixture(scope="module")
def dicom() -> bytes:
    return dicom_bytes(FILM.astype(np.uint16) * 16)


def test_magic_bytes_name_the_format(dicom: bytes) -> None:
    assert formats.sniff(encode(FILM, "JPEG")) == Sniffed(JPEG)
    assert formats.sniff(encode(FILM, "PNG")) == Sniffed(PNG)
    assert formats.sniff(dicom) == Sniffed(DICOM, 132)
    assert formats.sniff(dicom[128:]) == Sniffed(DICOM, 4)  # preamble stripped, 'DICM' kept
    assert formats.sniff(dicom[132:]) == Sniffed(DICOM, 0)  # a bare data set
    for other in (b"", b"GIF89a" + bytes(300), b"Patient notes\n" * 20, bytes(300)):
        assert formats.sniff(other) is None


def test_a_dicom_without_its_preamble_decodes_to_the_same_pixels(dicom: bytes) -> None:
    expected = load_xray(dicom).pixels
    for variant in (dicom[128:], dicom[132:]):
        np.testing.assert_array_equal(load_xray(variant).pixels, expected)


def test_a_truncated_dicom_is_damaged_not_unsupported(dicom: bytes) -> None:
    with pytest.raises(ImageError) as refused:
        load_xray(dicom[:-5000])
    assert refused.value.reason == "corrupt"
    assert formats.REFUSAL_STATUS["corrupt"] == 422
    assert "damaged or truncated" in str(refused.value) and "uncompressed" not in str(refused.value)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("x.exe", JPEG, "bad_extension"),
        ("x.jpg", PNG, "extension_mismatch"),
        ("x.dcm", JPEG, "extension_mismatch"),
        ("1.2.840.10008", JPEG, "bad_extension"),  # only DICOM may have a UID-like name
    ],
)
def test_names_that_do_not_fit_the_content_are_refused(name: str, content: str, reason: str) -> None:
    with pytest.raises(FormatError) as refused:
        formats.check_name(name, Sniffed(content))
    assert refused.value.reason == reason
    assert formats.REFUSAL_STATUS[reason] == 415


@pytest.mark.parametrize(
    ("name", "content"),
    [("x.JPEG", JPEG), ("x.dicom", DICOM), ("1.2.840.10008", DICOM), ("scan", PNG), ("x.png", None)],
)
def test_names_that_fit_are_accepted(name: str, content: str | None) -> None:
    formats.check_name(name, Sniffed(content) if content else None)  # no error; the decoder judges None


@pytest.mark.parametrize(
    ("name", "head", "picked"),
    [
        ("a.dicom", b"", True),  # by name (a broken one gets a row saying so)
        ("1.2.840.113619", bytes(128) + b"DICM", True),
        ("IM0001", b"\x89PNG\r\n\x1a\n", True),
        ("notes.txt", b"hello", False),
        ("1.2.3.txt", b"\x89PNG\r\n\x1a\n", False),  # a PNG with a foreign suffix: not ours to guess
    ],
)
def test_a_folder_scan_picks_what_the_kiosk_would_accept(name: str, head: bytes, picked: bool) -> None:
    assert formats.is_candidate(name, head) is picked


#: What the technician's message may hold and the nurse's words must not: figures, units, suffixes,
#: decoder terms.
TECHNICAL = re.compile(r"\d|\bMB\b|pixels?\b|megapixel|\bbit\b|transfer syntax|\.[a-z]{3,5}\b|Error\b")
CORE = Path(formats.__file__).parent


def test_every_refusal_code_has_plain_words_without_technical_figures() -> None:
    assert set(formats.PLAIN_WORDS) == set(formats.REFUSAL_STATUS)
    for reason in formats.REFUSAL_STATUS:
        words = formats.plain_words(reason)
        assert not TECHNICAL.search(words), (reason, words)
        # What is wrong, then what to do: two sentences at least.
        assert words.endswith(".") and len(re.findall(r"[.;] [A-Za-z]", words)) >= 1, (reason, words)


def test_an_unknown_code_still_gets_plain_words() -> None:
    words = formats.plain_words("a_code_added_later")
    assert words not in formats.PLAIN_WORDS.values() and not TECHNICAL.search(words)
    assert "technician" in words  # someone who can read the technical message


def test_every_reason_the_core_raises_is_a_refusal_code() -> None:
    """A reason raised without a code in REFUSAL_STATUS would have no status and no plain words."""
    raised = {
        reason
        for module in ("preprocess.py", "formats.py")
        for reason in re.findall(r'(?:ImageError|FormatError)\(\s*"(\w+)"', (CORE / module).read_text())
    }
    assert raised == set(formats.REFUSAL_STATUS)
