"""Signed exports: `fleet pool` takes only exports whose signature checks out with the key the
programme trusts for their kiosk; forged, altered, untrusted and (unless allowed) unsigned ones are
refused and nothing is written."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import pytest

from edge import signing
from fleet import pool as pooling
from fleet.__main__ import main
from fleet.trust import TrustedKiosks, TrustError

from .conftest import make_export, provisioned, site_films

SIZE = 32


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return make_export(tmp_path / "kiosk", site_films(1, 2, 0), tmp_path / "good.zip")


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def about_of(path: Path) -> dict[str, object]:
    return json.loads(members(path)["export.json"])


def forger_key(tmp_path: Path) -> Path:
    path = tmp_path / "forger.pem"
    path.write_bytes(signing.make_private_key())
    return path


def forge(source: Path, out: Path, key: Path | None, change: dict[str, bytes]) -> Path:
    """What a forger makes of `source`: films replaced by `change`, every checksum and export.json
    recomputed, and signed again with `key` (None: the original signature kept)."""
    files = {**members(source), **change}
    rows = list(csv.DictReader(io.StringIO(files["manifest.csv"].decode())))
    for row in rows:
        member = f"{row['label']}/{row['file']}"
        if member in files:
            row["sha256"] = hashlib.sha256(files[member]).hexdigest()
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    files["manifest.csv"] = text.getvalue().encode()
    about = json.loads(files["export.json"]) | {
        "manifest_sha256": hashlib.sha256(files["manifest.csv"]).hexdigest()
    }
    if key is not None:
        files["kiosk.pub"] = signing.public_key(key)
        about["signing_key"] = signing.fingerprint(files["kiosk.pub"])
    files["export.json"] = json.dumps(about).encode()
    if key is not None:
        files["export.sig"] = signing.sign(key, files["export.json"])
    return write_zip(out, files)


def altered_films(path: Path) -> dict[str, bytes]:
    """Every film of the export swapped for another of its films (a relabelling forgery)."""
    files = members(path)
    films = sorted(name for name in files if name.endswith(".png"))
    return {name: files[films[(i + 1) % len(films)]] for i, name in enumerate(films)}


def test_a_forged_export_signed_with_another_key_is_refused(good: Path, tmp_path: Path) -> None:
    trusted = provisioned(tmp_path / "trusted.json", tmp_path / "kiosk")
    forged = forge(good, tmp_path / "forged.zip", forger_key(tmp_path), altered_films(good))
    export = pooling.verify_export(forged)  # consistent and validly signed: only the trust file tells
    kiosk, real_key = about_of(good)["kiosk"], about_of(good)["signing_key"]
    assert export.site == kiosk and export.signing_key != real_key
    expected = f"kiosk {kiosk} signed it with the key {export.signing_key}, but {trusted.path} trusts only"
    with pytest.raises(TrustError, match=re.escape(f"{expected} {real_key}")):
        pooling.pool([good, forged], tmp_path / "pool", SIZE, trusted=trusted)
    assert not (tmp_path / "pool").exists()


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("export.json", "the signature of export.json does not check out"),
        ("manifest.csv", "manifest.csv does not match its sha256 in export.json"),
    ],
)
def test_an_export_altered_after_signing_is_refused(
    good: Path, tmp_path: Path, what: str, message: str
) -> None:
    if what == "export.json":  # films, checksums and export.json recomputed; the kiosk's signature kept
        altered = forge(good, tmp_path / "altered.zip", None, altered_films(good))
    else:  # films and manifest recomputed, export.json and its signature kept
        files = members(forge(good, tmp_path / "forged.zip", None, altered_films(good)))
        altered = write_zip(tmp_path / "altered.zip", files | {"export.json": members(good)["export.json"]})
    trusted = provisioned(tmp_path / "trusted.json", tmp_path / "kiosk")
    with pytest.raises(pooling.ExportError, match=re.escape(message)):
        pooling.pool([good, altered], tmp_path / "pool", SIZE, trusted=trusted)
    assert not (tmp_path / "pool").exists()


def test_an_export_from_a_kiosk_not_in_the_trust_file_is_refused(good: Path, tmp_path: Path) -> None:
    make_export(tmp_path / "other-kiosk", site_films(2, 1, 50), tmp_path / "other.zip")
    trusted = provisioned(tmp_path / "trusted.json", tmp_path / "other-kiosk")
    about = about_of(good)
    expected = f"kiosk {about['kiosk']} signed it with the key {about['signing_key']}, which is not in"
    with pytest.raises(TrustError, match=re.escape(expected)):
        pooling.pool([good], tmp_path / "pool", SIZE, trusted=trusted)
    out = ["--out", str(tmp_path / "pool"), "--trusted-kiosks", str(trusted.path)]
    with pytest.raises(SystemExit, match=re.escape(f'add "{about["kiosk"]}": "{about["signing_key"]}"')):
        main(["pool", str(good), *out, "--input-size", str(SIZE)])
    with pytest.raises(SystemExit, match=re.escape("pass --trusted-kiosks FILE")):
        main(["pool", str(good), "--out", str(tmp_path / "pool"), "--input-size", str(SIZE)])
    assert not (tmp_path / "pool").exists()
    assert json.loads(trusted.path.read_text()) == trusted.keys  # refusals record nothing


def test_trust_on_first_use_records_the_kiosk_then_refuses_another_key_for_it(
    good: Path, tmp_path: Path
) -> None:
    trust_file = tmp_path / "trusted.json"
    options = [
        "--out",
        str(tmp_path / "pool"),
        "--input-size",
        str(SIZE),
        "--trusted-kiosks",
        str(trust_file),
    ]
    assert main(["pool", str(good), *options, "--trust-on-first-use"]) == 0
    about = about_of(good)
    assert json.loads(trust_file.read_text()) == {about["kiosk"]: about["signing_key"]}
    pool_json = json.loads((tmp_path / "pool" / "pool.json").read_text())
    assert [(e["signing_key"], e["allowed_unsigned"]) for e in pool_json["exports"]] == [
        (about["signing_key"], False)
    ]

    forged = forge(good, tmp_path / "forged.zip", forger_key(tmp_path), altered_films(good))
    with pytest.raises(TrustError, match=re.escape(f"trusts only {about['signing_key']}")):
        pooling.pool(
            [forged], tmp_path / "pool", SIZE, trusted=TrustedKiosks.load(trust_file, first_use=True)
        )
    assert json.loads((tmp_path / "pool" / "pool.json").read_text()) == pool_json
    with pytest.raises(SystemExit, match="needs --trusted-kiosks"):
        main(["pool", str(good), "--out", str(tmp_path / "pool"), "--trust-on-first-use"])


def test_an_unsigned_export_is_refused_unless_allowed_and_then_recorded(good: Path, tmp_path: Path) -> None:
    files = members(good)
    about = json.loads(files.pop("export.json"))
    del files["export.sig"], files["kiosk.pub"], about["signing_key"], about["manifest_sha256"]
    old = write_zip(tmp_path / "old-kiosk.zip", files | {"export.json": json.dumps(about).encode()})
    with pytest.raises(pooling.ExportError, match=re.escape("it is not signed (no export.sig)")):
        pooling.pool([old], tmp_path / "pool", SIZE)
    assert not (tmp_path / "pool").exists()
    assert (
        main(
            ["pool", str(old), "--out", str(tmp_path / "pool"), "--input-size", str(SIZE), "--allow-unsigned"]
        )
        == 0
    )
    (export,) = json.loads((tmp_path / "pool" / "pool.json").read_text())["exports"]
    assert export["signing_key"] is None and export["allowed_unsigned"] is True
