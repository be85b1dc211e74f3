"""The confirmed-case export's pseudonymous patient keys, file checksums and signature, for pooling
many kiosks."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edge import signing
from edge.__main__ import main
from edge.webapp.records import export, xray_copies
from edge.webapp.records.audit_chain import Head
from edge.webapp.records.database import Case
from tests.kiosk_exports import confirmed_case

HEAD = Head(41, "ab" * 32)  # the audit log's head, signed into export.json


def seeded_case(data_dir: Path, case_id: int, seed: int, case_ref: str | None, label: str) -> Case:
    """A confirmed case whose film and upload checksum `seed` draws."""
    xray_copies.init_dir(data_dir)
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 30), dtype=np.uint8)
    sha = hashlib.sha256(f"upload {seed}".encode()).hexdigest()
    return confirmed_case(data_dir, case_id, pixels, sha, case_ref, label)


def exported(data_dir: Path, cases: list[Case]) -> tuple[zipfile.ZipFile, dict[str, dict[str, str]]]:
    buffer = io.BytesIO()
    export.write_dataset_zip(cases, data_dir, buffer, HEAD)
    archive = zipfile.ZipFile(buffer)
    rows = csv.DictReader(io.StringIO(archive.read("manifest.csv").decode()))
    return archive, {row["file"]: row for row in rows}


def test_manifest_has_file_checksums_and_keyed_patient_hashes_never_the_reference(tmp_path: Path) -> None:
    kiosk = tmp_path / "kiosk"
    cases = [
        seeded_case(kiosk, 1, 1, "REG-0042", "PNEUMONIA"),
        seeded_case(kiosk, 2, 2, "REG-0042", "PNEUMONIA"),  # the same child's second film
        seeded_case(kiosk, 3, 3, "REG-0077", "NORMAL"),
        seeded_case(kiosk, 4, 4, None, "NORMAL"),  # no reference typed: no key
    ]
    archive, rows = exported(kiosk, cases)
    files = {Path(name).name: archive.read(name) for name in archive.namelist() if name.endswith(".png")}
    assert {name: hashlib.sha256(data).hexdigest() for name, data in files.items()} == {
        name: row["sha256"] for name, row in rows.items()
    }
    keys = [rows[case.image_file]["patient_keys"] for case in cases]  # type: ignore[index]
    assert keys[0] == keys[1] != keys[2] and len(keys[0]) == 64 and keys[3] == ""
    for name in archive.namelist():
        assert b"REG-00" not in archive.read(name)
    assert json.loads(archive.read("export.json")) == {
        "format": export.EXPORT_FORMAT,
        "version": 1,
        "kiosk": export.kiosk_id((kiosk / export.EXPORT_KEY_FILE).read_bytes()),
        "films": 4,
        "manifest_sha256": hashlib.sha256(archive.read("manifest.csv")).hexdigest(),
        "signing_key": signing.fingerprint(archive.read("kiosk.pub")),
        "audit_chain_head": f"41:{'ab' * 32}",
    }
    assert stat.S_IMODE((kiosk / export.EXPORT_KEY_FILE).stat().st_mode) == 0o600


def test_keys_are_stable_at_one_kiosk_and_differ_between_kiosks(tmp_path: Path) -> None:
    first = exported(tmp_path / "a", [seeded_case(tmp_path / "a", 1, 1, "REG-1", "NORMAL")])[1]
    again = exported(tmp_path / "a", [seeded_case(tmp_path / "a", 1, 1, "REG-1", "NORMAL")])[1]
    other = exported(tmp_path / "b", [seeded_case(tmp_path / "b", 1, 1, "REG-1", "NORMAL")])[1]
    key = next(iter(first.values()))["patient_keys"]
    assert next(iter(again.values()))["patient_keys"] == key
    assert next(iter(other.values()))["patient_keys"] != key  # another clinic's secret: unlinkable


def test_the_export_is_signed_by_the_kiosks_key_which_never_leaves_it(tmp_path: Path) -> None:
    kiosk = tmp_path / "kiosk"
    first = exported(kiosk, [seeded_case(kiosk, 1, 1, "REG-1", "NORMAL")])[0]
    key_file = kiosk / export.SIGNING_KEY_FILE
    key = key_file.read_bytes()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and b"PRIVATE KEY" in key
    again = exported(kiosk, [seeded_case(kiosk, 2, 2, "REG-2", "PNEUMONIA")])[0]
    assert key_file.read_bytes() == key  # made once: every export is signed by the same key
    assert first.read("kiosk.pub") == again.read("kiosk.pub") == signing.public_key(key_file)
    for archive in (first, again):
        assert {"export.sig", "kiosk.pub"} <= set(archive.namelist())
        assert signing.verify(
            archive.read("kiosk.pub"), archive.read("export.json"), archive.read("export.sig")
        )
        for name in archive.namelist():
            data = archive.read(name)
            assert b"PRIVATE" not in data and key not in data
    other = exported(tmp_path / "b", [seeded_case(tmp_path / "b", 1, 1, "REG-1", "NORMAL")])[0]
    assert other.read("kiosk.pub") != first.read("kiosk.pub")  # one key per kiosk


def test_without_openssl_the_export_fails_clearly_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kiosk = tmp_path / "kiosk"
    case = seeded_case(kiosk, 1, 1, "REG-1", "NORMAL")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # a kiosk image without the openssl command
    signing.check_openssl.cache_clear()
    out = io.BytesIO()
    with pytest.raises(signing.SigningError, match="openssl command is not installed"):
        export.write_dataset_zip([case], kiosk, out, None)
    assert out.getvalue() == b"" and not (kiosk / export.SIGNING_KEY_FILE).exists()


def test_identity_prints_the_trust_file_line_that_the_first_export_carries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kiosk = tmp_path / "kiosk"
    assert main(["identity", "--data-dir", str(kiosk)]) == 0
    printed = json.loads("{" + capsys.readouterr().out.strip() + "}")
    archive, _ = exported(kiosk, [seeded_case(kiosk, 1, 1, "REG-0042", "NORMAL")])
    about = json.loads(archive.read("export.json"))
    assert printed == {about["kiosk"]: about["signing_key"]}  # made before the export, the same keys
    assert main(["identity", "--data-dir", str(kiosk)]) == 0
    assert json.loads("{" + capsys.readouterr().out.strip() + "}") == printed
