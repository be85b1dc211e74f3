"""Exports: the case list as CSV, and confirmed cases as a labelled dataset in the Kermany layout.

The dataset zip holds `NORMAL/<sha256>.png` and `PNEUMONIA/<sha256>.png` (the de-identified copies,
labelled with the clinician's confirmed diagnosis, not the model's) plus `manifest.csv`, so it
unzips straight into `SPLIT/` of a folder that `edge.kermany.scan_split` and the trainer read. An
image confirmed with different diagnoses in different cases is left out and listed as conflicting.

For pooling many clinics' exports (`python -m fleet pool`), each manifest row carries the exported
file's sha256 and a pseudonymous patient key: an HMAC-SHA256 of the case reference under a secret
that never leaves this kiosk (EXPORT_KEY_FILE in the data folder, made on first use), so one child's
films stay together without the reference ever leaving the clinic. `export.json` names the kiosk by
a value derived from the same secret.

Every export is signed so the programme can tell a kiosk's export from a forged one: `export.json`
holds the sha256 of `manifest.csv` (which holds every film's sha256) and the fingerprint of this
kiosk's Ed25519 key, `export.sig` is the signature of export.json's exact bytes and `kiosk.pub` the
public key. The private key (SIGNING_KEY_FILE, 0600, made on the first export) never leaves the
kiosk. Signing needs the `openssl` command (edge.signing); without it the export fails before a
byte is written. Every export also carries the audit log's chain head (edge.webapp.records.audit_chain): the
CSV in its last line, the zip in export.json, so a later rewrite of the log can be found.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import logging
import secrets
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from edge import signing
from edge.files import atomic_write_bytes
from edge.provenance import sha256_file
from edge.webapp.records import xray_copies
from edge.webapp.records.audit_chain import Head
from edge.webapp.records.database import Case

log = logging.getLogger(__name__)

CSV_COLUMNS = (
    "id",
    "case_ref",
    "created_utc",
    "status",
    "label",
    "probability",
    "threshold",
    "refer_band_upper",
    "uncertain",
    "reason",
    "quality_flags",
    "model_name",
    "model_sha256",
    "runtime",
    "input_sha256",
    "elapsed_ms",
    "confirmed_label",
    "confirmed_utc",
    "confirmed_by",
)
MANIFEST_COLUMNS = ("file", "label", "status", "cases", "last_confirmed_utc", "sha256", "patient_keys")
EXPORT_KEY_FILE = "export-key"
SIGNING_KEY_FILE = "signing-key.pem"
MANIFEST, ABOUT, SIGNATURE, PUBLIC_KEY = "manifest.csv", "export.json", "export.sig", "kiosk.pub"
EXPORT_FORMAT = "pneumoedge-confirmed-export"
#: The first cell of the CSV's last line, which holds the audit chain head.
CSV_TRAILER = "# audit_chain_head"


def cases_csv(cases: Iterable[Case], audit_head: Head | None) -> str:
    """One row per case; quality flags joined with ';'. The last line, `# audit_chain_head,N:SHA256`,
    is the audit log's head when the file was made (empty when the log is)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for case in cases:
        row = case.to_dict()
        row["quality_flags"] = ";".join(case.quality_flags)
        writer.writerow("" if row[column] is None else row[column] for column in CSV_COLUMNS)
    writer.writerow((CSV_TRAILER, str(audit_head or "")))
    return buffer.getvalue()


@dataclass
class _Image:
    """One distinct stored image and every diagnosis confirmed for it."""

    file: str
    labels: set[str] = field(default_factory=set)
    case_refs: set[str] = field(default_factory=set)
    cases: int = 0
    last_confirmed_utc: str = ""


def write_dataset_zip(
    cases: Iterable[Case], data_dir: Path | str, out: IO[bytes], audit_head: Head | None
) -> int:
    """Write the signed Kermany-layout zip of confirmed, assessable cases to `out`; return the images
    written. Everything is signed before the zip is begun, so a signing failure (signing.SigningError)
    leaves `out` untouched rather than half-made. export.json carries `audit_head`, the audit log's
    head (signed with the rest)."""
    key = load_or_create_export_key(data_dir)
    signing_key = load_or_create_signing_key(data_dir)
    public = signing.public_key(signing_key)
    films, manifest = _manifest(_group_confirmed(cases), data_dir, key)
    about = {
        "format": EXPORT_FORMAT,
        "version": 1,
        "kiosk": kiosk_id(key),
        "films": len(films),
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "signing_key": signing.fingerprint(public),
        "audit_chain_head": str(audit_head) if audit_head else None,
    }
    about_bytes = (json.dumps(about, indent=2) + "\n").encode()
    signature = signing.sign(signing_key, about_bytes)
    # PNGs are already compressed: storing them is as small and much faster.
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for member, path in films:
            archive.write(path, member)
        for name, data in (
            (MANIFEST, manifest),
            (ABOUT, about_bytes),
            (SIGNATURE, signature),
            (PUBLIC_KEY, public),
        ):
            archive.writestr(name, data)
    return len(films)


def _manifest(
    by_sha: dict[str, _Image], data_dir: Path | str, key: bytes
) -> tuple[list[tuple[str, Path]], bytes]:
    """The films to export (zip member, stored file) and manifest.csv's bytes, which list them."""
    manifest = io.StringIO()
    writer = csv.writer(manifest, lineterminator="\r\n")
    writer.writerow(MANIFEST_COLUMNS)
    films = []
    for sha, entry in sorted(by_sha.items()):
        label = next(iter(entry.labels)) if len(entry.labels) == 1 else ""
        path = xray_copies.path_of(data_dir, entry.file)
        if not label:
            status = "conflicting diagnoses: " + " / ".join(sorted(entry.labels))
        elif not path.is_file():
            status = "image missing"
            log.warning("stored image for input %s is missing; left out of the export", sha[:12])
        else:
            films.append((f"{label}/{entry.file}", path))
            status = "exported"
        file_sha = sha256_file(path) if status == "exported" else ""
        keys = ";".join(sorted(patient_key(key, ref) for ref in entry.case_refs))
        writer.writerow((entry.file, label, status, entry.cases, entry.last_confirmed_utc, file_sha, keys))
    return films, manifest.getvalue().encode("utf-8")


def load_or_create_signing_key(data_dir: Path | str) -> Path:
    """This kiosk's Ed25519 private key file, made once, readable by the kiosk's user only and never
    exported: the programme trusts exports signed by it (its fingerprint is in export.json)."""
    path = Path(data_dir) / SIGNING_KEY_FILE
    if not path.is_file():
        atomic_write_bytes(path, signing.make_private_key())  # 0600
    return path


def load_or_create_export_key(data_dir: Path | str) -> bytes:
    """This kiosk's pseudonymisation secret, made once and readable by the kiosk's user only."""
    path = Path(data_dir) / EXPORT_KEY_FILE
    if path.is_file():
        return path.read_bytes()
    key = secrets.token_bytes(32)
    atomic_write_bytes(path, key)  # 0600
    return key


def patient_key(key: bytes, case_ref: str) -> str:
    """HMAC-SHA256 of the case reference: stable at this kiosk, meaningless without its secret."""
    return hmac.new(key, case_ref.strip().encode("utf-8"), hashlib.sha256).hexdigest()


def kiosk_id(key: bytes) -> str:
    """A stable public name for this kiosk's exports (it reveals nothing of the secret)."""
    return hmac.new(key, b"pneumoedge kiosk id", hashlib.sha256).hexdigest()[:16]


def _group_confirmed(cases: Iterable[Case]) -> dict[str, _Image]:
    by_sha: dict[str, _Image] = {}
    for case in cases:
        if case.status != "ok" or case.confirmed_label is None or case.image_file is None:
            continue
        entry = by_sha.setdefault(case.input_sha256, _Image(case.image_file))
        entry.labels.add(case.confirmed_label)
        if case.case_ref:
            entry.case_refs.add(case.case_ref)
        entry.cases += 1
        entry.last_confirmed_utc = max(entry.last_confirmed_utc, case.confirmed_utc or "")
    return by_sha
