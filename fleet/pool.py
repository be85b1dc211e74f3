"""Pool many kiosks' confirmed-case exports into sharded training records, one export at a time.

Every export (the kiosk's `confirmed-dataset.zip`, docs/kiosk.md) is verified before anything is
written: a damaged, partial or altered export is refused with the reason, and the pool is left as it
was. Films are identified by the hash of their decoded pixels, so the same film sent by two sites is
kept once (a second site's patient key is linked to it, so the child stays on one side of a split);
a film confirmed with different labels at different sites is kept out of training. Exports already
pooled (same zip sha256) are skipped, and each run appends new shards only: re-running with one more
export adds that export's films and rewrites nothing else. Checksums catch damage and partial copies,
not forgery: an export re-made with consistent checksums passes (signing exports is future work).

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

from edge.files import atomic_write_bytes
from edge.kermany import LABELS
from edge.preprocess import ImageError, load_xray, to_model_input
from edge.provenance import sha256_file
from fleet.records import STATUS_CONFLICT, STATUS_OK, Record, read_records, write_records

if TYPE_CHECKING:
    from fleet.shards import ShardWriter

log = logging.getLogger(__name__)

POOL_FILE = "pool.json"
POOL_FORMAT = "pneumoedge-pool"
EXPORT_FORMAT = "pneumoedge-confirmed-export"  # edge/webapp/export.py writes it (no Flask import here)
EXPORT_VERSION = 1
MANIFEST, ABOUT = "manifest.csv", "export.json"
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
    """A verified export: the zip's own hash, the kiosk (site) that made it, and its films."""

    path: Path
    sha256: str
    site: str
    films: list[ExportFilm]


def verify_export(path: Path) -> Export:
    """Check the archive, its export.json and every manifest checksum; raise ExportError otherwise."""
    try:
        with zipfile.ZipFile(path) as archive:
            return _verify(archive, path)
    except (OSError, zipfile.BadZipFile) as e:
        raise ExportError(
            f"{path.name} is not a complete zip archive ({e}); copy it from the kiosk again"
        ) from e


def _verify(archive: zipfile.ZipFile, path: Path) -> Export:
    damaged = archive.testzip()
    if damaged is not None:
        raise ExportError(f"{path.name}: {damaged} is damaged (CRC mismatch); copy the export again")
    about = _about(archive, path.name)
    films, problems = [], []
    listed = {ABOUT, MANIFEST}
    for row in _manifest(archive, path.name):
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
    return Export(path, sha256_file(path), str(about["kiosk"]), films)


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


def _manifest(archive: zipfile.ZipFile, name: str) -> list[dict[str, str]]:
    if MANIFEST not in archive.namelist():
        raise ExportError(f"{name} has no {MANIFEST}: not a kiosk export, or a partial one")
    rows = list(csv.DictReader(io.StringIO(archive.read(MANIFEST).decode("utf-8"))))
    missing = [c for c in MANIFEST_NEEDS if rows and c not in rows[0]]
    if missing:
        raise ExportError(f"{name}: {MANIFEST} lacks the columns {missing}")
    return rows


def pool(
    exports: Sequence[Path], pool_dir: Path, input_size: int = 224, shard_films: int = 1024
) -> dict[str, Any]:
    """Verify every export, then add the new ones' new films as new shards; returns pool.json."""
    state = _load_state(pool_dir, input_size)
    verified = [verify_export(Path(p)) for p in exports]  # all or nothing: verify before writing
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
        return {"file": export.path.name, "sha256": export.sha256, "site": export.site, "counts": counts}

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
