"""Kiosk exports made by the kiosk's own export code (signed with the kiosk's own key), from synthetic
films, for the fleet tests; and the trust file the programme writes from those kiosks' provisioning."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge import signing
from edge.webapp.records import export, xray_copies
from fleet.trust import TrustedKiosks
from lab.synthetic import synthetic_xray
from tests.kiosk_exports import confirmed_case


@dataclass(frozen=True)
class Film:
    """One confirmed case: `seed` draws the picture (equal seeds, same film), `ref` the register number."""

    seed: int
    ref: str | None
    label: str


def film_pixels(seed: int, size: int = 64) -> np.ndarray:
    lesion = (0.3, 0.5) if seed % 2 else None
    return synthetic_xray(seed=seed, width=size, height=size, lesion=lesion)


def make_export(kiosk_dir: Path, films: list[Film], out: Path) -> Path:
    """What a kiosk whose data folder is `kiosk_dir` exports for these confirmed films."""
    xray_copies.init_dir(kiosk_dir)
    cases = []
    for number, film in enumerate(films, 1):
        pixels = film_pixels(film.seed)
        sha = hashlib.sha256(pixels.tobytes()).hexdigest()
        cases.append(confirmed_case(kiosk_dir, number, pixels, sha, film.ref, film.label))
    with out.open("wb") as handle:
        export.write_dataset_zip(cases, kiosk_dir, handle, None)
    return out


def site_films(site: int, patients: int, first_seed: int) -> list[Film]:
    """`patients` children of one site; every other child has two films; labels alternate by child."""
    films = []
    seed = first_seed
    for child in range(patients):
        label = "PNEUMONIA" if child % 2 else "NORMAL"
        for _ in range(2 if child % 2 == 0 else 1):
            films.append(Film(seed * 2 + (label == "PNEUMONIA"), f"REG-{site}-{child}", label))
            seed += 1
    return films


def provisioned(trust_file: Path, *kiosk_dirs: Path) -> TrustedKiosks:
    """The trust file holding these kiosks' ids and key fingerprints, as their provisioning records
    give them (read from each kiosk's own data folder, never from an export)."""
    keys = {}
    for kiosk_dir in kiosk_dirs:
        kiosk = export.kiosk_id(export.load_or_create_export_key(kiosk_dir))
        public = signing.public_key(export.load_or_create_signing_key(kiosk_dir))
        keys[kiosk] = signing.fingerprint(public)
    trust_file.write_text(json.dumps(keys), encoding="utf-8")
    return TrustedKiosks.load(trust_file)
