"""Is this picture laid out like a chest film? A check that needs no model.

Frontal chest films share one layout: a bright vertical mediastinum between two darker lung
fields, shoulders above, the diaphragm below. On a 32 x 32 thumbnail, z-scored, a few principal
components of the training films explain most of any film, and almost none of a lawn, a night sky,
a blurred clock or noise. The residual (the fraction of the thumbnail's variance the components
leave unexplained) is the film-likeness score: the model's own out-of-distribution score can miss
such textures (its embedding was trained to ignore blur and noise), this one cannot be fooled by
what the model learnt.

The components and the limit are fitted on training films only (`trainer.film_subspace_fit`,
`make film-subspace`) and shipped with the package, so every bundle, old or new, gets the check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

#: Side of the square thumbnail the score reads (the film squashed, as for the model).
SIDE = 32
#: Edge rows and columns whose gray-level std is at most this are surround, not film. Chosen on
#: training films with added borders (docs/edge-core.md): of 3, 6, 10 and 14, 10 is the lowest that
#: also trims a light box with sensor noise (std 8); 14 trimmed into the films themselves.
MARGIN_FLAT_STD = 10.0
_MIN_INSIDE = 8
#: The fitted components, mean and limit, shipped in the package.
DEFAULT_PATH = Path(__file__).with_name("film_subspace.npz")


def thumbnail(pixels: np.ndarray, side: int) -> np.ndarray:
    """A side x side float32 copy: every k-th pixel down to about 4 x side, then a box filter."""
    return _box(_strided(pixels, side), side)


def film_vector(pixels: np.ndarray) -> np.ndarray:
    """The z-scored 32 x 32 thumbnail of the picture inside its flat margins, as one vector.

    Brightness and contrast do not count, and neither does a plain surround (see `inside_margins`).
    """
    z = _box(inside_margins(_strided(pixels, SIDE)), SIDE).astype(np.float64).reshape(-1)
    return (z - z.mean()) / max(float(z.std()), 1e-6)


def inside_margins(sample: np.ndarray, flat_std: float = MARGIN_FLAT_STD) -> np.ndarray:
    """The picture without edge rows and columns that are flat to within `flat_std` gray levels.

    A film on a light box, a scanner bed or an export padded to a size adds such a surround; it
    says nothing about the layout of the chest and would otherwise squash it.
    """
    values = sample.astype(np.float32)
    rows = np.flatnonzero(values.std(axis=1) > flat_std)
    cols = np.flatnonzero(values.std(axis=0) > flat_std)
    if rows.size < _MIN_INSIDE or cols.size < _MIN_INSIDE:
        return sample  # (almost) all flat: the contrast checks judge it, not this one
    return np.ascontiguousarray(sample[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])


def _strided(pixels: np.ndarray, side: int) -> np.ndarray:
    step = max(1, max(pixels.shape) // (4 * side))
    return np.ascontiguousarray(pixels[::step, ::step])


def _box(sample: np.ndarray, side: int) -> np.ndarray:
    small = Image.fromarray(sample).resize((side, side), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)


@dataclass(frozen=True)
class FilmSubspace:
    """Mean and orthonormal components (k, 1024) of training films' vectors, and the residual limit."""

    mean: np.ndarray
    components: np.ndarray
    limit: float
    provenance: dict[str, Any]

    def residual(self, pixels: np.ndarray) -> float:
        """Fraction of the thumbnail's variance outside the films' subspace: ~0.1 on a film, ~1 on noise."""
        return float(self.residuals(film_vector(pixels)[np.newaxis])[0])

    def residuals(self, vectors: np.ndarray) -> np.ndarray:
        """`residual` for each row of film vectors (n, 1024)."""
        centred = np.asarray(vectors, dtype=np.float64) - self.mean
        rest = centred - (centred @ self.components.T) @ self.components
        return np.mean(rest**2, axis=1)

    def save(self, path: Path) -> None:
        """Write the .npz the kiosk loads: float32 arrays, the provenance as JSON (no pickles to load)."""
        with Path(path).open("wb") as out:
            np.savez(
                out,
                mean=self.mean.astype(np.float32),
                components=self.components.astype(np.float32),
                limit=np.float64(self.limit),
                provenance=np.array(json.dumps(self.provenance, sort_keys=True)),
            )

    @classmethod
    def load(cls, path: Path) -> FilmSubspace:
        with np.load(path, allow_pickle=False) as saved:
            mean = saved["mean"].astype(np.float64)
            components = saved["components"].astype(np.float64)
            if mean.shape != (SIDE * SIDE,) or components.ndim != 2 or components.shape[1] != mean.size:
                raise ValueError(
                    f"{path}: expected a {SIDE * SIDE}-value mean and (k, {SIDE * SIDE}) components"
                )
            return cls(mean, components, float(saved["limit"]), json.loads(str(saved["provenance"])))


def fit_subspace(vectors: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the first `components` principal directions of film vectors (n, 1024)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    mean = vectors.mean(axis=0)
    _, _, directions = np.linalg.svd(vectors - mean, full_matrices=False)
    return mean, directions[:components]


@cache
def default_subspace() -> FilmSubspace:
    """The shipped subspace, read once per process."""
    return FilmSubspace.load(DEFAULT_PATH)
