"""Fit the kiosk's film-layout check (edge.film_subspace) on training films, and measure it.

The components come from most training patients; the limit from the others, as the kiosk will
meet them: unchanged and re-acquired by every change of the robustness suite (lab.shift.SUITE),
times a margin. Nothing outside the training split chooses anything; the site and full-resolution
films are only measured (with the same changes), so the figures printed for them are honest.
NumPy and Pillow only: this runs in a minute on the training machine, without TensorFlow.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.film_subspace import FilmSubspace, film_vector, fit_subspace
from edge.kermany import IMAGE_SUFFIXES, Sample, scan_split
from edge.metrics import wilson_interval
from edge.preprocess import ImageError, XrayImage, load_xray
from edge.provenance import git_commit
from lab.shift import SUITE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitSettings:
    """What the fit depends on; recorded in the shipped file."""

    components: int = 16
    held_out_fraction: float = 0.2
    #: limit = margin x the largest residual of a held-out film, unchanged or re-acquired.
    margin: float = 1.25
    #: Every k-th held-out film goes through the whole suite (k chosen to give about this many).
    suite_films: int = 300
    seed: int = 0


@dataclass(frozen=True)
class Measured:
    """Residuals of one set of genuine films, and how many the limit refuses."""

    name: str
    residuals: np.ndarray
    limit: float

    @property
    def refused(self) -> int:
        return int(np.sum(self.residuals > self.limit))

    def line(self) -> str:
        n = self.residuals.size
        low, high = wilson_interval(self.refused, n)
        p50, p99, top = np.percentile(self.residuals, [50, 99, 100])
        return (
            f"{self.name:<44} {n:>6}  median {p50:.3f}  p99 {p99:.3f}  max {top:.3f}  "
            f"refused {self.refused} ({self.refused / n:.2%}, 95% CI {low:.2%}-{high:.2%})"
        )


def split_by_patient(
    samples: Sequence[Sample], fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """(fit, held out): whole patients on one side, about `fraction` of the patients held out."""
    patients = sorted({sample.patient for sample in samples})
    order = np.random.default_rng(seed).permutation(len(patients))
    held = {patients[i] for i in order[: round(fraction * len(patients))]}
    return [s for s in samples if s.patient not in held], [s for s in samples if s.patient in held]


def decode(paths: Iterable[Path]) -> list[XrayImage]:
    """The films that decode; the others are logged by name and left out, as training leaves them."""
    films = []
    for path in paths:
        try:
            films.append(load_xray(Path(path).read_bytes()))
        except ImageError as e:
            log.warning("left out %s: %s", Path(path).name, e)
    return films


def vectors(films: Iterable[np.ndarray]) -> np.ndarray:
    return np.stack([film_vector(pixels) for pixels in films])


def reacquired(films: Sequence[XrayImage], every: int) -> np.ndarray:
    """Film vectors of every `every`-th film under each change of the robustness suite."""
    chosen = films[::every]
    return np.concatenate([vectors(change(film.pixels) for film in chosen) for change in SUITE.values()])


def fit(data: Path, settings: FitSettings) -> tuple[FilmSubspace, list[Measured]]:
    """Components from the fit patients, the limit from the held-out ones, and their figures."""
    samples = scan_split(data, "train")
    fitting, held = split_by_patient(samples, settings.held_out_fraction, settings.seed)
    log.info(
        "fitting %d components on %d films; limit from %d held-out films",
        settings.components,
        len(fitting),
        len(held),
    )
    fit_films = decode(s.path for s in fitting)
    mean, components = fit_subspace(vectors(film.pixels for film in fit_films), settings.components)
    probe = FilmSubspace(mean, components, np.inf, {})
    held_films = decode(s.path for s in held)
    every = max(1, len(held_films) // settings.suite_films)
    unchanged = probe.residuals(vectors(film.pixels for film in held_films))
    changed = probe.residuals(reacquired(held_films, every))
    limit = settings.margin * float(max(unchanged.max(), changed.max()))
    provenance = {
        "data": f"{data.name}/train",
        "films": len(samples),
        "fit_films": len(fit_films),
        "held_out_films": len(held_films),
        "held_out_patients": len({s.patient for s in held}),
        "suite_films": len(held_films[::every]),
        "suite_changes": list(SUITE),
        "components": settings.components,
        "margin": settings.margin,
        "seed": settings.seed,
        "held_out_max": round(float(unchanged.max()), 4),
        "suite_max": round(float(changed.max()), 4),
        "commit": git_commit(),
    }
    subspace = FilmSubspace(mean, components, limit, provenance)
    return subspace, [
        Measured("held-out training films (chose the limit)", unchanged, limit),
        Measured("  the same, re-acquired by the suite (chose it)", changed, limit),
    ]


def measure_folder(subspace: FilmSubspace, folder: Path, every: int = 1) -> list[Measured]:
    """A folder of genuine films, unchanged and re-acquired by the suite: measured, never tuned on."""
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    films = decode(paths)
    return [
        Measured(
            f"{folder.name} (measured only)",
            subspace.residuals(vectors(f.pixels for f in films)),
            subspace.limit,
        ),
        Measured(
            "  the same, re-acquired by the suite",
            subspace.residuals(reacquired(films, every)),
            subspace.limit,
        ),
    ]
