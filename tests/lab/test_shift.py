"""The robustness suite's transforms and the shift evaluations' bookkeeping."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edge.preprocess import XrayImage
from lab import shift
from lab.synthetic import synthetic_xray


@pytest.fixture(scope="module")
def film() -> np.ndarray:
    return synthetic_xray(seed=3, width=224, height=224)


@pytest.mark.parametrize("name", list(shift.SUITE))
def test_each_change_gives_a_gray_film_that_differs_but_stays_a_film(name, film):
    out = shift.SUITE[name](film)
    assert out.dtype == np.uint8 and out.ndim == 2
    assert out.shape != film.shape or np.abs(out.astype(int) - film).mean() > 0.05
    # still the same picture: correlated with the original once brought to the same size (crop and
    # padding move the anatomy, hence the loose bound)
    resized = np.asarray(Image.fromarray(out).resize(film.shape[::-1], Image.Resampling.BILINEAR), float)
    assert np.corrcoef(resized.ravel(), film.ravel().astype(float))[0, 1] > 0.4


def test_jpeg_quality_30_loses_more_than_95(film):
    low = np.abs(shift.jpeg(30)(film).astype(int) - film).mean()
    high = np.abs(shift.jpeg(95)(film).astype(int) - film).mean()
    assert low > high


def test_gamma_brightens_below_one_and_darkens_above(film):
    assert shift.gamma(0.7)(film).mean() > film.mean() > shift.gamma(1.4)(film).mean()


def test_crop_keeps_the_size_and_enlarges_the_anatomy(film):
    cropped = shift.crop_border(0.08)(film)
    assert cropped.shape == film.shape
    centre = np.asarray(Image.fromarray(film[18:-18, 18:-18]).resize((224, 224), Image.Resampling.BICUBIC))
    assert np.abs(cropped.astype(int) - centre).mean() < 1.0


def test_padding_adds_black_borders_by_the_fraction(film):
    padded = shift.pad_border(0.08)(film)
    assert padded.shape == (260, 260) and padded[0, 0] == 0


def test_noise_is_the_same_for_the_same_film(film):
    assert np.array_equal(shift.noise(5.0)(film), shift.noise(5.0)(film))


def test_random_acquisition_keeps_the_model_input_shape():
    images = np.stack([synthetic_xray(seed=s, width=224, height=224)[..., None] for s in range(6)])
    varied = shift.random_acquisition(images, seed=0)
    assert varied.shape == images.shape and varied.dtype == np.uint8
    assert not np.array_equal(varied, images)


def test_refusals_count_as_wrong_answers():
    labels = np.array([True, False, True])
    scores = shift.refusals_as_errors(labels, np.array([np.nan, np.nan, 0.9]))
    assert list(scores >= 0.5) == [False, True, True]


def test_robustness_and_fullres_on_a_scorer_that_sees_brightness():
    films = [XrayImage(synthetic_xray(seed=s, width=224, height=224), "JPEG", 0.0) for s in range(12)]
    labels = np.array([s % 2 == 1 for s in range(12)])
    films = [XrayImage(np.clip(f.pixels.astype(int) + 40 * lab, 0, 255).astype(np.uint8), "JPEG", 0.0)
             for f, lab in zip(films, labels, strict=True)]  # fmt: skip

    def score(batch):
        return np.array([f.pixels.mean() / 255.0 for f in batch])

    threshold = float(np.median(score(films)))
    result = shift.robustness(score, films, labels, threshold)
    assert set(result) == {"unchanged", *shift.SUITE}
    assert result["unchanged"]["auc"] == 1.0
    assert result["gamma 1.4 (darker)"]["sensitivity"] < result["unchanged"]["sensitivity"]
    worst = shift.worst_of(result)
    assert worst["sensitivity"]["value"] <= result["gamma 1.4 (darker)"]["sensitivity"]
    fullres = shift.fullres_agreement(score, films, films, threshold)
    assert fullres["agreement"] == 1.0 and fullres["refused"] == 0


def test_paired_fullres_matches_films_by_name(tmp_path):
    for root, size in (("full", (300, 420)), ("copies", (224, 224))):
        for label in ("NORMAL", "PNEUMONIA"):
            (tmp_path / root / label).mkdir(parents=True)
            buffer = io.BytesIO()
            Image.fromarray(synthetic_xray(seed=1, width=size[0], height=size[1])).save(buffer, "JPEG")
            (tmp_path / root / label / f"{label}-1.jpeg").write_bytes(buffer.getvalue())
    big, small = shift.paired_fullres(tmp_path / "full", tmp_path / "copies")
    assert big.names == small.names == ["NORMAL-1.jpeg", "PNEUMONIA-1.jpeg"]
    assert big.films[0].width == 300 and small.films[0].width == 224
    (tmp_path / "copies" / "NORMAL" / "NORMAL-1.jpeg").unlink()
    with pytest.raises(FileNotFoundError, match="have no copy"):
        shift.paired_fullres(tmp_path / "full", tmp_path / "copies")
