"""Evaluations that can see shift: the robustness suite and the full-resolution agreement check.

A validation split from the training pool shares its acquisition path (one resampling, JPEG quality
75, one exposure curve), so it cannot see what changes between sites. These checks can:

- the robustness suite re-acquires held-out films in realistic ways (resampling chains, JPEG
  quality 30-95, gamma, blur and sharpening, noise, border crop and padding, small rotations) and
  reports AUC, sensitivity and specificity per change;
- the full-resolution check gives the same film at its original aspect ratio and at 224 px and
  counts label disagreements and gate refusals.

Transforms use Pillow (the kiosk's own imaging library), independently of the TensorFlow training
augmentation, so a model cannot pass the suite by fitting one implementation's kernels. A scorer is
any function from decoded films to probabilities (NaN where the quality gate refused), so the same
code measures a Keras model in `trainer` and a bundle in `quantize`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from edge.kermany import Sample, drop_duplicates, scan_split
from edge.metrics import binary_metrics, confusion, roc_auc, wilson_interval
from edge.preprocess import ImageError, XrayImage, load_xray, to_model_input

log = logging.getLogger(__name__)

Transform = Callable[[np.ndarray], np.ndarray]
#: Films in, one probability each out (NaN: refused by the quality gate).
Scorer = Callable[[Sequence[XrayImage]], np.ndarray]


def _pil(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(pixels, mode="L")


def _back(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.uint8).copy()


def rescale(factor: float, down: Image.Resampling, up: Image.Resampling) -> Transform:
    """Resize by `factor` with one kernel and back with another, as two export paths would."""

    def apply(pixels: np.ndarray) -> np.ndarray:
        img = _pil(pixels)
        size = (max(8, round(img.width * factor)), max(8, round(img.height * factor)))
        return _back(img.resize(size, down).resize(img.size, up))

    return apply


def enlarge(factor: float, method: Image.Resampling) -> Transform:
    """A larger film than the training copies: the kiosk's own resize then brings it to the model."""

    def apply(pixels: np.ndarray) -> np.ndarray:
        img = _pil(pixels)
        return _back(img.resize((round(img.width * factor), round(img.height * factor)), method))

    return apply


def jpeg(quality: int) -> Transform:
    def apply(pixels: np.ndarray) -> np.ndarray:
        buffer = io.BytesIO()
        _pil(pixels).save(buffer, "JPEG", quality=quality)
        return _back(Image.open(io.BytesIO(buffer.getvalue())))

    return apply


def gamma(value: float) -> Transform:
    lut = np.clip(np.rint(255.0 * (np.arange(256) / 255.0) ** value), 0, 255).astype(np.uint8)
    return lambda pixels: lut[pixels]


def blur(radius: float) -> Transform:
    return lambda pixels: _back(_pil(pixels).filter(ImageFilter.GaussianBlur(radius)))


def sharpen(radius: float, percent: int) -> Transform:
    return lambda pixels: _back(_pil(pixels).filter(ImageFilter.UnsharpMask(radius, percent, threshold=0)))


def noise(std: float, seed: int = 0) -> Transform:
    def apply(pixels: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(seed + int(pixels.sum()) % 100_003)  # fixed per film
        noisy = pixels.astype(np.float32) + rng.normal(0.0, std, pixels.shape)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)

    return apply


def crop_border(fraction: float) -> Transform:
    """Tighter collimation: the anatomy fills more of a film of the same pixel size.

    (A bare crop of a 224 px copy would fall under the gate's minimum size and test only the refusal.)
    """

    def apply(pixels: np.ndarray) -> np.ndarray:
        dy, dx = round(pixels.shape[0] * fraction), round(pixels.shape[1] * fraction)
        cropped = _pil(pixels[dy : pixels.shape[0] - dy, dx : pixels.shape[1] - dx])
        return _back(cropped.resize((pixels.shape[1], pixels.shape[0]), Image.Resampling.BICUBIC))

    return apply


def pad_border(fraction: float) -> Transform:
    def apply(pixels: np.ndarray) -> np.ndarray:
        dy, dx = round(pixels.shape[0] * fraction), round(pixels.shape[1] * fraction)
        return np.pad(pixels, ((dy, dy), (dx, dx)), constant_values=0)

    return apply


def rotate(degrees: float) -> Transform:
    return lambda pixels: _back(_pil(pixels).rotate(degrees, Image.Resampling.BICUBIC, fillcolor=0))


_B = Image.Resampling
#: The robustness suite: name -> transform of an 8-bit gray film.
SUITE: dict[str, Transform] = {
    "resample 0.5x bilinear, back bicubic": rescale(0.5, _B.BILINEAR, _B.BICUBIC),
    "resample 0.35x box, back bilinear": rescale(0.35, _B.BOX, _B.BILINEAR),
    "enlarge 1.43x lanczos (320 px film)": enlarge(320 / 224, _B.LANCZOS),
    "enlarge 4x bicubic (900 px film)": enlarge(4.0, _B.BICUBIC),
    "jpeg quality 30": jpeg(30),
    "jpeg quality 50": jpeg(50),
    "jpeg quality 95": jpeg(95),
    "gamma 0.7 (brighter)": gamma(0.7),
    "gamma 1.4 (darker)": gamma(1.4),
    "gaussian blur radius 1": blur(1.0),
    "unsharp mask 2 px 150%": sharpen(2.0, 150),
    "gaussian noise std 5": noise(5.0),
    "border crop 8%, same size": crop_border(0.08),
    "border padding 8%": pad_border(0.08),
    "rotation +5 degrees": rotate(5.0),
    "rotation -5 degrees": rotate(-5.0),
}


def transformed(films: Sequence[XrayImage], transform: Transform) -> list[XrayImage]:
    return [XrayImage(transform(film.pixels), film.source_format, film.colourfulness) for film in films]


def random_acquisition(images: np.ndarray, seed: int) -> np.ndarray:
    """Model inputs (n, s, s, 1), each re-acquired by one suite change drawn at random, back to s x s.

    Varied films for the sets that calibrate int8 ranges and the out-of-distribution gate: clean
    training copies alone taught both that one export path is the only real one.
    """
    rng = np.random.default_rng(seed)
    names = list(SUITE)
    size = images.shape[1]
    varied = []
    for image in images:
        film = XrayImage(SUITE[names[rng.integers(len(names))]](image[..., 0]), "JPEG", 0.0)
        varied.append(to_model_input(film, size))
    return np.stack(varied)


def operating_figures(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, Any]:
    """AUC, sensitivity and specificity with refusals counted as wrong answers, and the refusal count."""
    labels = np.asarray(labels).astype(bool)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    refused = np.isnan(probabilities)
    # a refused film is a wrong answer: a missed pneumonia, or a healthy child sent for review
    predicted = np.where(refused, ~labels, probabilities >= threshold)
    cm = confusion(labels, predicted)
    scored = ~refused
    return {
        "n": int(labels.size),
        "refused": int(refused.sum()),
        "auc": roc_auc(labels[scored], probabilities[scored]),
        "sensitivity": cm["tp"] / max(1, cm["tp"] + cm["fn"]),
        "sensitivity_ci95": list(wilson_interval(cm["tp"], cm["tp"] + cm["fn"])),
        "specificity": cm["tn"] / max(1, cm["tn"] + cm["fp"]),
        "specificity_ci95": list(wilson_interval(cm["tn"], cm["tn"] + cm["fp"])),
    }


def robustness(
    score: Scorer, films: Sequence[XrayImage], labels: np.ndarray, threshold: float
) -> dict[str, dict[str, Any]]:
    """The suite on these films: figures per change, plus label agreement with the unchanged films."""
    clean = score(films)
    results = {"unchanged": {**operating_figures(labels, clean, threshold), "probabilities": clean.tolist()}}
    clean_labels = clean >= threshold
    for name, transform in SUITE.items():
        probabilities = score(transformed(films, transform))
        figures = operating_figures(labels, probabilities, threshold)
        both = ~np.isnan(probabilities) & ~np.isnan(clean)
        figures["agreement_with_unchanged"] = float(
            np.mean((probabilities >= threshold)[both] == clean_labels[both])
        )
        figures["probabilities"] = probabilities.tolist()
        results[name] = figures
    return results


def worst_of(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The lowest AUC, sensitivity and specificity over the suite's changes, and where each occurred."""
    changes = {k: v for k, v in results.items() if k != "unchanged"}
    worst = {}
    for key in ("auc", "sensitivity", "specificity"):
        name = min(changes, key=lambda k: changes[k][key])
        worst[key] = {"value": changes[name][key], "change": name}
    return worst


def fullres_agreement(
    score: Scorer, fullres: Sequence[XrayImage], copies: Sequence[XrayImage], threshold: float
) -> dict[str, Any]:
    """Same films at full aspect ratio and as 224 px copies: label agreement, refusals, drift."""
    big, small = score(fullres), score(copies)
    refused = np.isnan(big)
    both = ~refused & ~np.isnan(small)
    agree = (big[both] >= threshold) == (small[both] >= threshold)
    # a refused full-resolution film disagrees: the clinic got no answer where the copy got one
    agreement = int(agree.sum()) / len(fullres) if len(fullres) else float("nan")
    return {
        "films": len(fullres),
        "refused": int(refused.sum()),
        "agreement": agreement,
        "agreement_ci95": list(wilson_interval(int(agree.sum()), len(fullres))),
        "flips_to_normal": int(((big[both] < threshold) & (small[both] >= threshold)).sum()),
        "flips_to_pneumonia": int(((big[both] >= threshold) & (small[both] < threshold)).sum()),
        "median_abs_drift": float(np.median(np.abs(big[both] - small[both]))) if both.any() else float("nan"),
        "probabilities": big.tolist(),
        "copy_probabilities": small.tolist(),
    }


@dataclass(frozen=True)
class FilmSet:
    """Decoded films of one evaluation set, with labels (1 = PNEUMONIA) and file names."""

    description: str
    films: list[XrayImage]
    labels: np.ndarray
    names: list[str]


def load_film_set(description: str, samples: Sequence[Sample]) -> FilmSet:
    """Decode every sample through the kiosk's decoder; an unreadable file is logged and left out."""
    films, labels, names = [], [], []
    for sample in samples:
        try:
            films.append(load_xray(sample.path.read_bytes()))
        except (ImageError, OSError) as e:
            log.warning("left out of %s: %s", description, e)
            continue
        labels.append(sample.label)
        names.append(sample.path.name)
    return FilmSet(description, films, np.asarray(labels, dtype=bool), names)


def paired_fullres(fullres_dir: Path, copies_dir: Path) -> tuple[FilmSet, FilmSet]:
    """Full-aspect films and their 224 px copies, paired by label and file name."""
    big = scan_split(fullres_dir.parent, fullres_dir.name)
    by_key = {(s.label, s.path.name): s for s in scan_split(copies_dir.parent, copies_dir.name)}
    missing = [s.path.name for s in big if (s.label, s.path.name) not in by_key]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} full-resolution films have no copy in {copies_dir}: {missing[:3]}"
        )
    small = [by_key[(s.label, s.path.name)] for s in big]
    return load_film_set(f"{fullres_dir} (full aspect)", big), load_film_set(
        f"their copies in {copies_dir}", small
    )


@dataclass(frozen=True)
class ShiftSets:
    """The evaluations that can see shift; any may be absent."""

    site: FilmSet | None = None
    suite: FilmSet | None = None  # held-out films the robustness suite re-acquires
    fullres: tuple[FilmSet, FilmSet] | None = None


def build_shift_sets(
    site: Path | None,
    fullres: Path | None,
    fullres_copies: Path,
    held_out: Sequence[Sample],
    suite_films: int,
    held_out_description: str,
    seed: int = 0,
) -> ShiftSets | None:
    """Decode the sets asked for; the suite draws `suite_films` of `held_out`, stratified and seeded."""
    if site is None and fullres is None and suite_films <= 0:
        return None
    suite = None
    if suite_films > 0:
        picked = stratified(held_out, suite_films, seed)
        suite = load_film_set(f"{len(picked)} films drawn from {held_out_description}", picked)
    return ShiftSets(
        site=site_films(site) if site else None,
        suite=suite,
        fullres=paired_fullres(fullres, fullres_copies) if fullres else None,
    )


def site_films(site: Path) -> FilmSet:
    """The site films as `edge calibrate` counts them: byte-identical copies dropped, and said so."""
    kept, dropped = drop_duplicates(scan_split(site.parent, site.name))
    return load_film_set(f"{site} ({len(dropped)} byte-identical duplicate files dropped)", kept)


def stratified(samples: Sequence[Sample], count: int, seed: int) -> list[Sample]:
    """`count` samples keeping the class balance, seeded, in their original order."""
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for label in (0, 1):
        rows = [i for i, s in enumerate(samples) if s.label == label]
        picked += rng.permutation(rows)[: round(count * len(rows) / max(1, len(samples)))].tolist()
    return [samples[i] for i in sorted(picked)]


def refusals_as_errors(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """A refused film (NaN) becomes a wrong answer: below any threshold if PNEUMONIA, above if NORMAL."""
    return np.where(np.isnan(probabilities), np.where(labels, -1.0, 2.0), probabilities)


def shift_report(score: Scorer, threshold: float, sets: ShiftSets, seed: int = 0) -> dict[str, Any]:
    """Every shift evaluation present in `sets`, at `threshold`; probabilities kept for agreement checks."""
    report: dict[str, Any] = {}
    if sets.site is not None:
        probabilities = score(sets.site.films)
        report["site"] = {
            "description": sets.site.description,
            "films": len(sets.site.films),
            "refused": int(np.isnan(probabilities).sum()),
            "metrics": binary_metrics(
                sets.site.labels, refusals_as_errors(sets.site.labels, probabilities), threshold, seed=seed
            ),
            "probabilities": probabilities.tolist(),
        }
    if sets.suite is not None:
        suite = robustness(score, sets.suite.films, sets.suite.labels, threshold)
        report["robustness"] = {
            "description": sets.suite.description,
            "changes": suite,
            "worst": worst_of(suite),
        }
    if sets.fullres is not None:
        report["fullres"] = {
            "description": sets.fullres[0].description,
            **fullres_agreement(score, sets.fullres[0].films, sets.fullres[1].films, threshold),
        }
    return report
