"""The film-layout check: chest films pass, textures, skies and noise do not, whatever the model learnt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from edge import film_subspace, quality
from edge.film_subspace import FilmSubspace, film_vector, fit_subspace
from edge.preprocess import XrayImage, load_xray
from lab.synthetic import synthetic_xray

SHIPPED = film_subspace.default_subspace()
LIMITS = quality.QualityThresholds()
#: The photos that slipped past the v0.2 gate (grass, a deep field, a blurred clock) passed the
#: orientation scores by chance; with that check off, the film-layout check is judged alone.
ALONE = quality.QualityThresholds(check_orientation=False)
SITE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "site-calibration"


def gate(pixels: np.ndarray, limits: quality.QualityThresholds = LIMITS) -> quality.GateResult:
    return quality.check_image(XrayImage(pixels, "PNG", 0.0), limits)


def grass(seed: int) -> np.ndarray:
    """A fine texture with the contrast of a film: blades of light and dark everywhere."""
    rng = np.random.default_rng(seed)
    blades = Image.fromarray(rng.integers(0, 256, size=(600, 600), dtype=np.uint8)).filter(
        ImageFilter.GaussianBlur(2)
    )
    pixels = np.asarray(blades, dtype=np.float64)
    return np.clip((pixels - pixels.mean()) * 8 + 128, 0, 255).astype(np.uint8)


def night_sky(seed: int) -> np.ndarray:
    """Dark, with a few hundred small bright sources (a telescope's deep field)."""
    rng = np.random.default_rng(seed)
    sky = Image.new("L", (700, 700), 8)
    pixels = np.asarray(sky, dtype=np.float64).copy()
    for x, y, r in zip(
        rng.integers(0, 700, 300), rng.integers(0, 700, 300), rng.integers(2, 9, 300), strict=True
    ):
        pixels[max(0, y - r) : y + r, max(0, x - r) : x + r] = rng.integers(120, 256)
    blurred = Image.fromarray(pixels.astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.5))
    return np.asarray(blurred, dtype=np.uint8)


def test_the_shipped_subspace_is_orthonormal_and_its_limit_follows_its_recorded_rule():
    k = SHIPPED.components.shape[0]
    assert SHIPPED.components.shape == (k, film_subspace.SIDE**2) and k >= 8
    np.testing.assert_allclose(SHIPPED.components @ SHIPPED.components.T, np.eye(k), atol=1e-4)
    made = SHIPPED.provenance
    assert made["data"] == "chest_xray/train" and made["fit_films"] + made["held_out_films"] <= made["films"]
    expected = made["margin"] * max(made["held_out_max"], made["suite_max"])
    assert SHIPPED.limit == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize(("width", "height"), [(224, 224), (1000, 1200), (2400, 2000)])
@pytest.mark.parametrize("seed", range(3))
def test_synthetic_films_pass(seed, width, height):
    assert gate(synthetic_xray(seed, width, height)).passed


@pytest.mark.parametrize(
    "picture",
    [
        grass(1),
        grass(2),
        night_sky(3),
        night_sky(4),
        np.random.default_rng(5).integers(0, 256, (500, 500), np.uint8),
    ],
    ids=["grass-1", "grass-2", "sky-3", "sky-4", "uniform-noise"],
)
def test_textures_skies_and_noise_are_not_chest_films(picture):
    result = gate(picture, ALONE)
    assert result.flags == (quality.NOT_A_CHEST_FILM,), result.detail
    assert f"limit {SHIPPED.limit:.2f}" in result.detail


@pytest.mark.parametrize(("value", "noise_std"), [(0, 0.0), (128, 0.0), (255, 0.0), (230, 8.0)])
def test_a_surround_round_a_film_does_not_count(value, noise_std):
    film = synthetic_xray(4, 900, 1000)
    framed = np.pad(film, 150, constant_values=value).astype(np.float64)
    framed[:150] += np.random.default_rng(0).normal(0.0, noise_std, framed[:150].shape)
    framed = np.clip(framed, 0, 255).astype(np.uint8)
    # without the trimming a gray or white surround lifts this film's residual from 0.40 to 0.62
    assert SHIPPED.residual(framed) == pytest.approx(SHIPPED.residual(film), abs=0.1)
    assert gate(framed).passed


def test_a_flat_picture_keeps_its_margins_for_the_contrast_checks():
    flat = np.full((300, 300), 90, dtype=np.uint8)
    assert film_subspace.inside_margins(flat) is flat
    assert gate(flat).flags == (quality.BLANK,)


def test_a_film_on_its_side_is_told_to_turn_it_not_that_it_is_no_film():
    assert gate(np.rot90(synthetic_xray(1, 1000, 1200))).flags == (quality.ROTATED,)


def test_the_check_can_be_switched_off():
    off = quality.QualityThresholds(check_orientation=False, check_film_layout=False)
    assert quality.check_image(XrayImage(grass(1), "PNG", 0.0), off).passed


def test_residual_is_zero_inside_the_subspace_and_all_of_what_lies_outside_it():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(1024, 3)))[0]
    mean, components = fit_subspace(rng.normal(size=(50, 3)) @ basis.T, 3)
    fitted = FilmSubspace(mean, components, 0.5, {})
    away = rng.normal(size=1024)
    away -= components.T @ (components @ away)
    assert fitted.residuals((mean + 2.0 * basis[:, 0])[np.newaxis])[0] == pytest.approx(0.0, abs=1e-10)
    assert fitted.residuals((mean + away)[np.newaxis])[0] == pytest.approx(np.mean(away**2))


def test_brightness_and_contrast_do_not_change_the_score():
    film = synthetic_xray(2, 800, 900).astype(np.float64)
    darker = np.clip(film * 0.6 + 20, 0, 255).astype(np.uint8)
    np.testing.assert_allclose(film_vector(film.astype(np.uint8)), film_vector(darker), atol=0.05)


def test_save_and_load_round_trip(tmp_path: Path):
    path = tmp_path / "subspace.npz"
    SHIPPED.save(path)
    again = FilmSubspace.load(path)
    assert again.limit == SHIPPED.limit and again.provenance == SHIPPED.provenance
    np.testing.assert_allclose(again.components, SHIPPED.components, atol=1e-6)


def test_a_file_of_the_wrong_shape_is_refused(tmp_path: Path):
    path = tmp_path / "bad.npz"
    FilmSubspace(np.zeros(10), np.zeros((2, 10)), 0.5, {}).save(path)
    with pytest.raises(ValueError, match="1024-value mean"):
        FilmSubspace.load(path)


@pytest.mark.data
@pytest.mark.skipif(not SITE.is_dir(), reason=f"site films not found at {SITE}")
def test_no_site_film_is_refused_by_the_film_layout_check():
    films = [load_xray(p.read_bytes()).pixels for p in sorted(SITE.glob("*/*.jpeg"))]
    residuals = [SHIPPED.residual(film) for film in films]
    assert len(films) > 300
    assert max(residuals) <= SHIPPED.limit
