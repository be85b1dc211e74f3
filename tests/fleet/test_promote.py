"""Promotion: a worse candidate is refused, a better one promoted; the decision lands in bundle.json.

The field bundle is the tests' tiny model with a head fitted (logistic regression on its embeddings)
to tell synthetic films with an opacity from films without; the degraded candidate has that head
negated, so it ranks the films backwards. Everything runs through the kiosk's own Screener.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.bundle import Bundle, load_bundle
from edge.metrics import choose_threshold
from edge.preprocess import load_model_input
from edge.runtime import TfliteModel
from fleet.__main__ import main
from fleet.promote import Rule, promote
from lab.synthetic import encode, synthetic_xray
from tests.tiny_bundle import INPUT_SIZE


def lesion(seed: int) -> tuple[float, float] | None:
    return (0.28 + 0.22 * (seed % 3), 0.45 + 0.05 * (seed % 4)) if seed % 2 else None


def film(seed: int) -> np.ndarray:
    return synthetic_xray(seed=seed, width=300, height=360, lesion=lesion(seed))


def write_films(folder: Path, seeds: range, fmt: str = "PNG", **save: object) -> Path:
    for seed in seeds:
        label = "PNEUMONIA" if lesion(seed) else "NORMAL"
        (folder / label).mkdir(parents=True, exist_ok=True)
        data = encode(film(seed), fmt, **save)
        (folder / label / f"film-{seed}.{fmt.lower()}").write_bytes(data)
    return folder


def with_head(source: Bundle, out: Path, kernel: np.ndarray, bias: float, threshold: float) -> Path:
    """A copy of the bundle with another head and threshold (the model file, so its hash, unchanged)."""
    shutil.copytree(source.root, out)
    metadata = json.loads((out / "bundle.json").read_text())
    metadata["head"].update(kernel=kernel.tolist(), bias=bias)
    metadata.update(name=out.name, threshold=threshold)
    (out / "bundle.json").write_text(json.dumps(metadata))
    return out


@pytest.fixture(scope="module")
def films(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """A locked set (PNG) and one shift set (JPEG quality 40) of 40 films each."""
    root = tmp_path_factory.mktemp("films")
    locked = write_films(root / "locked", range(0, 40))
    return locked, {"jpeg": write_films(root / "jpeg", range(100, 140), "JPEG", quality=40)}


@pytest.fixture(scope="module")
def heads(tiny_bundle_float: Bundle, films: tuple[Path, dict[str, Path]]) -> dict[str, tuple]:
    """(kernel, bias, threshold) of a head fitted on 80 other films, and of its negation.

    The thresholds are set on the evaluation films themselves (recall 1 for the fitted head, 0.5 for
    the negated one), so that the tests isolate the decision rule from threshold generalisation.
    """
    model = TfliteModel(tiny_bundle_float.model_path)

    def embeddings(files: list[bytes]) -> np.ndarray:
        return np.stack([model.run(load_model_input(data, INPUT_SIZE))["embedding"][0] for data in files])

    seeds = range(500, 580)
    x = embeddings([encode(film(s), "PNG") for s in seeds])
    y = np.array([lesion(s) is not None for s in seeds], dtype=np.float64)
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(3000):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        w, b = w - 0.5 * z.T @ (p - y) / y.size, b - 0.5 * float((p - y).mean())
    kernel, bias = w / std, b - float((w * mean / std).sum())
    locked, shift = films
    paths = [f for folder in (locked, *shift.values()) for f in sorted(folder.glob("*/*"))]
    x_eval = embeddings([f.read_bytes() for f in paths])
    y_eval = np.array([f.parent.name == "PNEUMONIA" for f in paths])
    result = {}
    for name, sign, recall in (("good", 1.0, 1.0), ("negated", -1.0, 0.5)):
        p = 1 / (1 + np.exp(-sign * (x_eval @ kernel + bias)))
        result[name] = (sign * kernel, sign * bias, choose_threshold(y_eval, p, recall) * (1 - 1e-6))
    return result


def test_a_worse_candidate_is_refused_and_the_reason_is_written_into_it(
    tiny_bundle_float: Bundle, heads: dict, films: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    field = with_head(tiny_bundle_float, tmp_path / "field", *heads["good"])
    worse = with_head(tiny_bundle_float, tmp_path / "worse", *heads["negated"])
    locked, shift = films
    section = promote(worse, field, locked, shift, Rule(n_boot=500))
    assert section["decision"] == "refuse"
    figures = section["evidence"]["locked"]
    assert figures["field"]["auc"] > 0.7 and figures["candidate"]["auc"] < 0.3, figures
    assert any("auc" in reason for reason in section["reasons"])
    stored = load_bundle(worse).metadata["promotion"]  # still a valid bundle, with the decision
    assert stored["decision"] == "refuse" and stored["compared_with"]["name"] == "field"
    shift_args = [f"--shift={name}={folder}" for name, folder in shift.items()]
    common = ["--field", str(field), "--locked", str(locked), "--boot", "200", *shift_args]
    assert main(["promote", "--candidate", str(worse), *common]) == 3


def test_a_better_candidate_is_promoted(
    tiny_bundle_float: Bundle, heads: dict, films: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    field = with_head(tiny_bundle_float, tmp_path / "field", *heads["negated"])
    better = with_head(tiny_bundle_float, tmp_path / "better", *heads["good"])
    locked, shift = films
    section = promote(better, field, locked, shift, Rule(n_boot=500))
    assert section["decision"] == "promote", section["reasons"]
    low, high = section["evidence"]["locked"]["difference"]["auc"]["ci95"]
    assert 0 < low <= high
    assert load_bundle(better).metadata["promotion"]["decision"] == "promote"
