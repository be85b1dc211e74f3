"""Does a model between the head-only start and the fine-tuned end rank a new cohort better?

    python -m benchmarks.weight_interpolation --site ../shared/data/site-calibration runs/mobilenetv2

WiSE-FT (Wortsman et al., CVPR 2022): fine-tuning a pretrained network moves it towards the training
distribution; averaging its weights with those it started from (`(1 - alpha) * start + alpha * end`)
often keeps most of the in-distribution gain and much of the start's robustness to shift. Here the
start is `head_only.keras` (ImageNet features, head fitted) and the end is `model.keras`. Each mix
scores the run's validation patients (in distribution) and the site's films (the new cohort)
through the run's own input path (a file that does not decode is skipped, as in training).
Nothing is fitted on either, so every AUC is honest on its films; the mix to ship is fixed before
looking (docs/training.md), the others are for the curve.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edge import INTENDED_USE
from edge.kermany import drop_duplicates, scan_split
from edge.metrics import roc_auc
from lab.run_dir import read_run_dir
from lab.tf_env import keras
from trainer.data import load_images

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="training run directories holding head_only.keras")
    parser.add_argument("--site", type=Path, required=True, help="site films (NORMAL/, PNEUMONIA/)")
    parser.add_argument("--alphas", type=float, nargs="+", default=DEFAULT_ALPHAS, help="weights of the end")
    args = parser.parse_args()
    if any(not 0.0 <= a <= 1.0 for a in args.alphas):
        parser.error("every alpha must lie in [0, 1]")
    site, _ = drop_duplicates(scan_split(args.site.parent, args.site.name))
    print("run, alpha, validation AUC, site AUC", flush=True)
    for run_dir in args.runs:
        for alpha, val_auc, site_auc in interpolation_curve(run_dir, site, args.alphas):
            print(f"{run_dir.name}, {alpha:.2f}, {val_auc:.4f}, {site_auc:.4f}", flush=True)
    print(f"{INTENDED_USE} Every figure here is a research measurement.")


def interpolation_curve(run_dir: Path, site: list, alphas: list[float]) -> list[tuple[float, float, float]]:
    """(alpha, validation AUC, site AUC) for each mix of the run's start and end weights."""
    run = read_run_dir(run_dir)
    start = keras.models.load_model(run.head_only_path, compile=False)
    end = keras.models.load_model(run.model_path, compile=False)
    val = [row.sample(run.data_root) for row in run.split["val"]]
    sets = [load_images(films, run.input_size, "decoding", run.intensity) for films in (val, site)]
    rows = []
    for alpha in alphas:
        mixed = interpolate(start, end, alpha)
        aucs = [roc_auc(s.labels, _scores(mixed, s.images)) for s in sets]
        rows.append((alpha, *aucs))
    return rows


def interpolate(start: keras.Model, end: keras.Model, alpha: float) -> keras.Model:
    """`end` with every weight moved to `(1 - alpha) * start + alpha * end` (BatchNorm statistics too)."""
    mixed = keras.models.clone_model(end)
    mixed.set_weights(
        [(1.0 - alpha) * a + alpha * b for a, b in zip(start.get_weights(), end.get_weights(), strict=True)]
    )
    return mixed


def _scores(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return model.predict(images.astype(np.float32), batch_size=32, verbose=0).ravel()


if __name__ == "__main__":
    main()
