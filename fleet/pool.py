"""Pool many kiosks' confirmed-case exports into sharded training records, one export at a time.

Every export (the kiosk's `confirmed-dataset.zip`, docs/kiosk.md) is verified before anything is
written: a damaged, partial or altered export is refused with the reason, and the pool is left as it
was. Films are identified by the hash of their decoded pixels, so the same film sent by two sites is
kept once (a second site's patient key is linked to it, so the child stays on one side of a split);
a film confirmed with different labels at different sites is kept out of training. Exports already
pooled (same zip sha256) are skipped, and each run appends new shards only: re-running with one more
export adds that export's films and rewrites nothing else. Checksums catch damage and partial copies;
the kiosk's Ed25519 signature of export.json (which holds manifest.csv's sha256, which holds every
film's) catches alteration, and the trust file (fleet/trust.py) says whose keys are the programme's
kiosks, so a forged export is refused. Unsigned exports (kiosks older than signing) are refused
unless allowed, and pool.json records which exports were pooled unsigned.

Each new film is stored once as its model input (a lossless PNG): in a TFRecord shard, which the
multi-worker trainer reads, and the same bytes under films/{NORMAL,PNEUMONIA}/, the Kermany layout
that a pool run's split.csv names, so `trainer evaluate` and `quantize export` read pool runs as
they read any run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import signing
from edge.files import atomic_write_bytes
from edge.kermany import LABELS
from edge.preprocess import ImageError, load_xray, to_model_input
from edge.provenance import sha256_file
from fleet.records import STATUS_CONFLICT, STATUS_OK, Record, read_records, write_records
from fleet.trust import TrustedKiosks, TrustError

if TYPE_CHECKING:
    from fleet.shards import ShardWriter

log = logging.getLogger(__name__)

POOL_FILE = "pool.json"
POOL_FORMAT = "pneumoedge-pool"
EXPORT_FORMAT = (
    "pneumoedge-confirmed-export"  # edge/webapp/records/export.py writes it (no Flask import here)
)
EXPORT_VERSION = 1
MANIFEST, ABOUT, SIGNATURE, PUBLIC_KEY = "manifest.csv", "export.json", "export.sig", "kiosk.pub"
MANIFEST_NEEDS = ("file", "label", "status", "sha256", "patient_keys")
SHOWN_PROBLEMS = 5


class ExportError(ValueError):
    """An export that must not be pooled; the message names it and says what is wrong."""


@dataclass(frozen=True)
class ExportFilm:
    member: str  # its name inside the zip
    sha256: str
    label: int
    patient_keys: tuple[str, ...]


@dataclass(frozen=True)
class Export:
    """A verified export: the zip's own hash, the kiosk (site) that made it, its films, and the
    fingerprint of the key that signed it (None: unsigned, allowed by the caller)."""

    path: Path
    sha256: str
    site: str
    films: list[ExportFilm]
    signing_key: str | None


def verify_export(path: Path, allow_unsigned: bool = False) -> Export:
    """Check the archive, its export.json, its signature and every manifest checksum; raise
    ExportError otherwise. Whether the signing key is trusted is the caller's check (TrustedKiosks)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return _verify(archive, path, allow_unsigned)
    except (OSError, zipfile.BadZipFile) as e:
        raise ExportError(
            f"{path.name} is not a complete zip archive ({e}); copy it from the kiosk again"
        ) from e


def _verify(archive: zipfile.ZipFile, path: Path, allow_unsigned: bool) -> Export:
    damaged = archive.testzip()
    if damaged is not None:
        raise ExportError(f"{path.name}: {damaged} is damaged (CRC mismatch); copy the export again")
    about = _about(archive, path.name)
    rows = _manifest(archive, path.name)
    signing_key = _signing_key(archive, about, path.name, allow_unsigned)
    films, problems = [], []
    listed = {ABOUT, MANIFEST} | ({SIGNATURE, PUBLIC_KEY} if signing_key else set())
    for row in rows:
        if row["status"] != "exported":
            continue  # conflicting diagnoses or a missing image: not a confirmed film
        member = f"{row['label']}/{row['file']}"
        listed.add(member)
        if row["label"] not in LABELS:
            problems.append(f"{member}: unknown label {row['label']!r}")
        elif member not in archive.namelist():
            problems.append(f"{member} is listed in {MANIFEST} but missing (a partial export)")
        else:
            if hashlib.sha256(archive.read(member)).hexdigest() != row["sha256"]:
                problems.append(f"{member} does not match its {MANIFEST} checksum (altered)")
            keys = tuple(k for k in row["patient_keys"].split(";") if k)
            films.append(ExportFilm(member, row["sha256"], LABELS.index(row["label"]), keys))
    problems += [f"{name} is not listed in {MANIFEST}" for name in archive.namelist() if name not in listed]
    if not problems and len(films) != about["films"]:
        problems.append(f"{MANIFEST} lists {len(films)} exported films but {ABOUT} says {about['films']}")
    if problems:
        shown = "; ".join(problems[:SHOWN_PROBLEMS])
        more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
        raise ExportError(f"{path.name} is refused, nothing was pooled: {shown}{more}")
    return Export(path, sha256_file(path), str(about["kiosk"]), films, signing_key)


def _about(archive: zipfile.ZipFile, name: str) -> dict[str, Any]:
    if ABOUT not in archive.namelist():
        raise ExportError(
            f"{name} has no {ABOUT}: it was made by a kiosk without pseudonymous patient keys, so its "
            "films could not be kept together by child; update the kiosk and export again"
        )
    about = json.loads(archive.read(ABOUT))
    if about.get("format") != EXPORT_FORMAT or about.get("version") != EXPORT_VERSION:
        raise ExportError(f"{name}: {ABOUT} is not a version {EXPORT_VERSION} {EXPORT_FORMAT} ({about})")
    return about


def _signing_key(
    archive: zipfile.ZipFile, about: dict[str, Any], name: str, allow_unsigned: bool
) -> str | None:
    """The fingerprint of the key whose signature of export.json (and so of manifest.csv's sha256)
    checks out; None for an unsigned export when allowed; ExportError otherwise."""
    refused = f"{name} is refused, nothing was pooled"
    if SIGNATURE not in archive.namelist():
        if allow_unsigned:
            log.warning("%s is not signed; pooled because unsigned exports are allowed", name)
            return None
        raise ExportError(
            f"{refused}: it is not signed (no {SIGNATURE}): made by a kiosk older than export signing, "
            "or stripped of its signature; update the kiosk and export again, or pool with "
            "--allow-unsigned to accept unsigned exports"
        )
    if PUBLIC_KEY not in archive.namelist():
        raise ExportError(f"{refused}: it has {SIGNATURE} but no {PUBLIC_KEY} to check it with")
    public = archive.read(PUBLIC_KEY)
    try:
        fingerprint = signing.fingerprint(public)
    except signing.SigningError as e:
        raise ExportError(f"{refused}: {PUBLIC_KEY}: {e}") from e
    if not signing.verify(public, archive.read(ABOUT), archive.read(SIGNATURE)):
        raise ExportError(f"{refused}: the signature of {ABOUT} does not check out (altered after signing)")
    if about.get("signing_key") != fingerprint:
        raise ExportError(f"{refused}: {ABOUT} names the key {about.get('signing_key')}, not {PUBLIC_KEY}")
    if about.get("manifest_sha256") != hashlib.sha256(archive.read(MANIFEST)).hexdigest():
        raise ExportError(
            f"{refused}: {MANIFEST} does not match its sha256 in {ABOUT} (altered after signing)"
        )
    return fingerprint


def _manifest(archive: zipfile.ZipFile, name: str) -> list[dict[str, str]]:
    if MANIFEST not in archive.namelist():
        raise ExportError(f"{name} has no {MANIFEST}: not a kiosk export, or a partial one")
    rows = list(csv.DictReader(io.StringIO(archive.read(MANIFEST).decode("utf-8"))))
    missing = [c for c in MANIFEST_NEEDS if rows and c not in rows[0]]
    if missing:
        raise ExportError(f"{name}: {MANIFEST} lacks the columns {missing}")
    return rows


def pool(
    exports: Sequence[Path],
    pool_dir: Path,
    input_size: int = 224,
    shard_films: int = 1024,
    trusted: TrustedKiosks | None = None,
    allow_unsigned: bool = False,
) -> dict[str, Any]:
    """Verify every export and its kiosk's key, then add the new ones' new films as new shards;
    returns pool.json. `trusted` is needed for signed exports; kiosks it records on first use are
    saved once every export is verified, before the pool is written."""
    state = _load_state(pool_dir, input_size)
    verified = [verify_export(Path(p), allow_unsigned) for p in exports]  # all or nothing: verify first
    _check_trust(verified, trusted)
    pool_dir.mkdir(parents=True, exist_ok=True)
    from fleet.shards import ShardWriter  # TensorFlow loads only once every export is verified

    records = read_records(pool_dir) if state["exports"] else []
    shards = ShardWriter(pool_dir, len(state["shards"]), shard_films)
    additions = _Additions(pool_dir, records, shards, input_size)
    pooled = {e["sha256"] for e in state["exports"]}
    try:
        for export in verified:
            if export.sha256 in pooled:
                log.info("%s was pooled before; skipped", export.path.name)
                continue
            pooled.add(export.sha256)
            stats = additions.add_export(export)
            state["exports"].append(stats)
            log.info("%s (site %s): %s", export.path.name, export.site, stats["counts"])
    finally:
        state["shards"] += shards.close()
    write_records(pool_dir, records)
    state["films"] = {
        "ok": sum(r.status == STATUS_OK for r in records),
        "conflicting": sum(r.status == STATUS_CONFLICT for r in records),
        "sites": len({r.site for r in records}),
    }
    state["updated_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    atomic_write_bytes(pool_dir / POOL_FILE, (json.dumps(state, indent=2) + "\n").encode(), mode=0o644)
    return state


def _check_trust(exports: list[Export], trusted: TrustedKiosks | None) -> None:
    """Refuse the run unless every signed export's key is the one trusted for its kiosk."""
    for export in exports:
        if export.signing_key is None:
            continue
        if trusted is None:
            raise TrustError(
                f"{export.path.name} is signed by kiosk {export.site} (key {export.signing_key}): "
                "pass --trusted-kiosks FILE, the programme's kiosk keys"
            )
        trusted.check(export.path.name, export.site, export.signing_key)
    if trusted is not None:
        trusted.save()


def _load_state(pool_dir: Path, input_size: int) -> dict[str, Any]:
    path = pool_dir / POOL_FILE
    if not path.is_file():
        return {"format": POOL_FORMAT, "version": 1, "input_size": input_size, "shards": [], "exports": []}
    state = json.loads(path.read_text(encoding="utf-8"))
    if state.get("format") != POOL_FORMAT or state.get("input_size") != input_size:
        raise ExportError(
            f"{path} is a {state.get('format')} pool of {state.get('input_size')} px films; "
            f"pool into another folder to use {input_size} px"
        )
    return state


@dataclass
class _Additions:
    """The pool's film table while exports are added, and the shard writer new films go to."""

    pool_dir: Path
    records: list[Record]
    shards: ShardWriter
    input_size: int

    def __post_init__(self) -> None:
        self.index = {r.content_sha256: i for i, r in enumerate(self.records)}

    def add_export(self, export: Export) -> dict[str, Any]:
        counts = {"added": 0, "duplicates": 0, "conflicting": 0, "unreadable": 0}
        with zipfile.ZipFile(export.path) as archive:
            for film in export.films:
                data = archive.read(film.member)
                if hashlib.sha256(data).hexdigest() != film.sha256:  # changed since it was verified
                    raise ExportError(f"{export.path.name}: {film.member} changed while it was pooled")
                counts[self._add_film(export, film, data)] += 1
        return {
            "file": export.path.name,
            "sha256": export.sha256,
            "site": export.site,
            "signing_key": export.signing_key,
            "allowed_unsigned": export.signing_key is None,
            "counts": counts,
        }

    def _add_film(self, export: Export, film: ExportFilm, data: bytes) -> str:
        """Add one film; returns what became of it (a key of the export's counts)."""
        from fleet.shards import example, png

        try:
            image = load_xray(data)
        except ImageError as e:
            log.warning("a film of %s cannot be decoded (%s); skipped", export.path.name, e)
            return "unreadable"
        content = _content_sha256(image.pixels)
        keys = [f"{export.site}:{k}" for k in film.patient_keys] or [f"film:{content}"]
        if content in self.index:
            kept = self.records[self.index[content]]
            outcome = "duplicates"
            if kept.label != film.label and kept.status == STATUS_OK:
                kept, outcome = replace(kept, status=STATUS_CONFLICT), "conflicting"
                (self.pool_dir / kept.film_path).unlink(missing_ok=True)  # out of the Kermany view too
            self.records[self.index[content]] = kept.with_patients(keys)
            return outcome
        model_input = png(to_model_input(image, self.input_size))
        shard = self.shards.add(example(model_input, film.label, content))
        self.index[content] = len(self.records)
        patients = tuple(sorted(keys))
        record = Record(
            content,
            film.label,
            export.site,
            patients,
            STATUS_OK,
            shard,
            export.sha256,
            hashlib.sha256(model_input).hexdigest(),
        )
        (self.pool_dir / record.film_path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.pool_dir / record.film_path, model_input, mode=0o644)
        self.records.append(record)
        return "added"


def _content_sha256(pixels: Any) -> str:
    """The film's identity: its decoded pixels (and shape), whatever container or encoder carried it."""
    return hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()
