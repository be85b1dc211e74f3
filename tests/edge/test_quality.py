"""The quality gate: each refusal for the right reason, and real-looking X-rays pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge import quality
from edge.preprocess import XrayImage, load_model_input, load_xray
from edge.runtime import TfliteModel
from lab.synthetic import encode, synthetic_xray, xray_bytes

LIMITS = quality.QualityThresholds()


def gate(data: bytes, limits: quality.QualityThresholds = LIMITS) -> quality.GateResult:
    return quality.check_image(load_xray(data), limits)


def colour_photo(seed: int = 0, width: int = 640, height: int = 480) -> np.ndarray:
    """A smooth colourful scene: sky-blue top, green bottom, an orange sun, a little noise."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), dtype=np.float64)
    img[: height // 2] = (110, 160, 230)
    img[height // 2 :] = (60, 140, 50)
    yy, xx = np.mgrid[:height, :width]
    img[(yy - height // 4) ** 2 + (xx - width * 3 // 4) ** 2 < (height // 8) ** 2] = (250, 160, 40)
    img += rng.normal(0, 8, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("width", "height"), [(1000, 1200), (224, 224), (2400, 2000)])
def test_synthetic_xrays_pass(width, height):
    result = gate(xray_bytes(5, width=width, height=height))
    assert result.passed, result.detail
    assert result.reason is None
    assert result.detail == ""


def test_gray_xray_saved_as_rgb_jpeg_passes():
    gray = synthetic_xray(6, 800, 900)
    assert gate(encode(np.stack([gray] * 3, axis=2), "JPEG", quality=85)).passed


def test_colour_photo_is_refused():
    result = gate(encode(colour_photo(), "JPEG"))
    assert result.flags == (quality.COLOUR_PHOTO,)
    assert result.detail.startswith("cannot assess: this looks like a colour photograph")


@pytest.mark.parametrize("value", [0, 128, 255])
def test_uniform_image_is_blank(value):
    result = gate(encode(np.full((600, 500), value, dtype=np.uint8), "PNG"))
    assert result.flags == (quality.BLANK,)
    assert "blank or nearly uniform" in result.detail


def test_faint_noise_on_uniform_is_still_blank():
    rng = np.random.default_rng(0)
    faint = np.clip(120 + rng.normal(0, 2, size=(600, 500)), 0, 255).astype(np.uint8)
    assert gate(encode(faint, "PNG")).flags == (quality.BLANK,)


def test_tiny_image_is_refused_but_training_size_passes():
    assert gate(xray_bytes(7, width=150, height=150)).flags == (quality.TOO_SMALL,)
    assert gate(xray_bytes(7, width=224, height=224)).passed


def test_extreme_aspect_ratio_is_refused():
    result = gate(xray_bytes(8, width=1500, height=500))
    assert result.flags == (quality.EXTREME_ASPECT,)
    assert "3.0 times longer than wide" in result.detail


def test_a_wide_genuine_film_is_not_refused_for_its_shape():
    # the widest full-aspect film of fullres-dev is 687 x 320 (2.15:1)
    assert quality.EXTREME_ASPECT not in gate(xray_bytes(8, width=1374, height=640)).flags


def test_several_problems_are_all_reported_in_one_reason():
    result = gate(encode(np.full((40, 400), 10, dtype=np.uint8), "PNG"))
    assert result.flags == (quality.TOO_SMALL, quality.EXTREME_ASPECT, quality.BLANK)
    assert result.reason == quality.TOO_SMALL
    assert result.detail.count(";") == 2


def test_thresholds_can_be_loosened():
    loose = quality.QualityThresholds(min_side=100, max_colourfulness=1000.0, check_orientation=False)
    assert gate(xray_bytes(7, width=150, height=150), loose).passed
    assert gate(encode(colour_photo(), "JPEG"), loose).passed


def xray_image(pixels: np.ndarray) -> XrayImage:
    return XrayImage(np.ascontiguousarray(pixels), "PNG", 0.0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("width", "height"), [(224, 224), (1400, 1100), (2000, 2400)])
def test_upright_film_passes_the_orientation_check(seed, width, height):
    film = synthetic_xray(seed, width, height)
    scores = quality.orientation_scores(film)
    assert scores.polarity > 0.5 and scores.upright > 0.5 and scores.head_up > 0
    assert quality.check_image(xray_image(film), LIMITS).passed


@pytest.mark.parametrize("seed", range(4))
def test_inverted_film_is_refused_as_inverted(seed):
    film = synthetic_xray(seed, 1000, 1200)
    data = encode(255 - film, "JPEG", quality=90)
    result = gate(data)
    assert result.flags == (quality.INVERTED,)
    assert "negative image" in result.detail and "bones white" in result.detail
    assert quality.orientation_scores(255 - film).polarity < 0 < quality.orientation_scores(film).polarity


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("turns", [1, 3])
def test_film_on_its_side_is_refused_as_rotated(seed, turns):
    film = np.rot90(synthetic_xray(seed, 1000, 1200), turns)
    result = gate(encode(np.ascontiguousarray(film), "PNG"))
    assert result.flags == (quality.ROTATED,)
    assert "lying on its side" in result.detail and "rotate it upright" in result.detail


@pytest.mark.parametrize("seed", range(4))
def test_upside_down_film_is_refused_as_rotated(seed):
    film = np.rot90(synthetic_xray(seed, 1000, 1200), 2)
    result = quality.check_image(xray_image(film), LIMITS)
    assert result.flags == (quality.ROTATED,)
    assert "upside down" in result.detail


@pytest.mark.parametrize("value", [255, 0])
def test_a_light_or_dark_border_round_an_upright_film_is_not_taken_for_a_negative(value):
    # Collimator margins and light-box photographs put a light frame round a positive film.
    film = np.pad(synthetic_xray(4, 1000, 1200), 150, constant_values=value)
    assert quality.check_image(xray_image(film), LIMITS).passed


def test_inverted_film_on_its_side_gets_both_reasons():
    film = np.rot90(255 - synthetic_xray(3, 1000, 1200))
    result = quality.check_image(xray_image(film), LIMITS)
    assert result.flags == (quality.INVERTED, quality.ROTATED)
    assert result.reason == quality.INVERTED


def test_orientation_check_can_be_switched_off():
    film = np.rot90(255 - synthetic_xray(3, 1000, 1200))
    result = quality.check_image(xray_image(film), quality.QualityThresholds(check_orientation=False))
    assert result.flags == (quality.NOT_A_CHEST_FILM,)  # the layout check still sees a film on its side


def test_orientation_is_not_judged_on_images_refused_for_another_reason():
    # A colour photo scores as neither upright nor positive; its reason stays the plain one.
    assert gate(encode(colour_photo(), "JPEG")).flags == (quality.COLOUR_PHOTO,)
    wide = np.rot90(synthetic_xray(2, 500, 1500))
    assert quality.check_image(xray_image(wide), LIMITS).flags == (quality.EXTREME_ASPECT,)


def test_ood_gate_refuses_noise_and_passes_xrays(tiny_bundle_int8):
    model = TfliteModel(tiny_bundle_int8.model_path)
    ood = quality.OodStats.from_metadata(tiny_bundle_int8.metadata["ood"])
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, size=(224, 224, 1), dtype=np.uint8)
    embedding = model.run(noise)["embedding"]
    result = quality.check_embedding(embedding, ood, LIMITS)
    assert result.flags == (quality.OUT_OF_DISTRIBUTION,)
    assert "does not look like the chest X-rays" in result.detail
    passed = [
        quality.check_embedding(
            model.run(load_model_input(xray_bytes(300 + s), 224))["embedding"], ood, LIMITS
        ).passed
        for s in range(8)
    ]
    assert all(passed)


def test_ood_gate_is_skipped_without_statistics_or_when_switched_off(tiny_bundle_int8):
    ood = quality.OodStats.from_metadata(tiny_bundle_int8.metadata["ood"])
    far = ood.mean + 100 * ood.std
    assert not quality.check_embedding(far, ood, LIMITS).passed
    assert quality.check_embedding(far, None, LIMITS).passed
    assert quality.check_embedding(far, ood, quality.QualityThresholds(check_ood=False)).passed


def test_rms_z_matches_its_definition():
    ood = quality.OodStats(np.array([1.0, 2.0]), np.array([0.5, 2.0]), 3.0)
    assert ood.score(np.array([2.0, 6.0])) == pytest.approx(np.sqrt((2.0**2 + 2.0**2) / 2))


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"mean": [0, 0], "std": [1], "threshold": 2}, "equal-length"),
        ({"mean": [0], "std": [0], "threshold": 2}, "std > 0"),
        ({"mean": [0], "std": [1], "threshold": 2, "statistic": "mahalanobis"}, "knows 'rms_z'"),
    ],
)
def test_bad_ood_sections_are_refused(section, message):
    with pytest.raises(ValueError, match=message):
        quality.OodStats.from_metadata(section)


def test_embedding_size_mismatch_is_refused():
    ood = quality.OodStats(np.zeros(4), np.ones(4), 2.0)
    with pytest.raises(ValueError, match="embedding has 3 values, the ood statistics 4"):
        ood.score(np.zeros(3))


DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "chest_xray" / "train"


@pytest.mark.data
@pytest.mark.skipif(not DATA.is_dir(), reason=f"real chest X-rays not found at {DATA}")
def test_real_training_xrays_pass_the_image_checks():
    files = sorted(DATA.glob("*/*.jpeg"))[::50]
    refused = {f.name: gate(f.read_bytes()).detail for f in files if not gate(f.read_bytes()).passed}
    assert len(files) > 50
    assert refused == {}


@pytest.mark.data
@pytest.mark.skipif(not DATA.is_dir(), reason=f"real chest X-rays not found at {DATA}")
def test_real_training_films_turned_or_inverted_are_refused():
    films = [load_xray(f.read_bytes()).pixels for f in sorted(DATA.glob("*/*.jpeg"))[::100]]
    inverted = [quality.check_image(xray_image(255 - film), LIMITS) for film in films]
    assert not any(result.passed for result in inverted)
    assert sum(result.flags == (quality.INVERTED,) for result in inverted) >= 0.95 * len(films)
    for film in films:
        assert quality.check_image(xray_image(film), LIMITS).passed
        for turns in (1, 3):
            assert quality.check_image(xray_image(np.rot90(film, turns)), LIMITS).flags == (quality.ROTATED,)
