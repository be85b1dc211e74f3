"""Kiosk exports made by the kiosk's own export code, from synthetic films, for the fleet tests."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.webapp import export, images
from edge.webapp.store import Case
from tests.tiny_bundle import synthetic_xray


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
    images.init_dir(kiosk_dir)
    cases = []
    for number, film in enumerate(films, 1):
        pixels = film_pixels(film.seed)
        sha = hashlib.sha256(pixels.tobytes()).hexdigest()
        name = images.save(kiosk_dir, sha, images.deidentified_png(pixels))
        cases.append(
            Case(
                case_ref=film.ref,
                status="ok",
                label=film.label,
                probability=0.5,
                threshold=0.5,
                reason=None,
                detail="",
                quality_flags=(),
                model_name="tiny",
                model_sha256="0" * 64,
                runtime="test",
                input_sha256=sha,
                image_file=name,
                elapsed_ms=1.0,
                id=number,
                created_utc="2026-11-30T10:00:00+00:00",
                confirmed_label=film.label,
                confirmed_utc="2026-11-30T10:05:00+00:00",
                confirmed_by="nurse",
            )
        )
    with out.open("wb") as handle:
        export.write_dataset_zip(cases, kiosk_dir, handle)
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
