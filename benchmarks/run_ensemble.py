"""Would an ensemble of training runs rank a site's films better than its best member?

    python -m benchmarks.run_ensemble --site ../shared/data/site-calibration runs/a runs/b runs/c

The question behind distilling several runs into one MobileNetV2: a student can at best learn its
teacher, so the teacher (the runs' mean logit) must beat the single runs first. Each run's float
Keras model scores the site's films through its own input path (its intensity standardisation);
nothing is fitted on them, so every AUC is honest on these films.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from edge import INTENDED_USE
from edge.kermany import drop_duplicates, scan_split
from edge.metrics import roc_auc
from edge.preprocess import load_model_input
from lab.run_dir import read_run_dir
from lab.tf_env import keras


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="training run directories (two or more)")
    parser.add_argument("--site", type=Path, required=True, help="site films (NORMAL/, PNEUMONIA/)")
    args = parser.parse_args()
    if len(args.runs) < 2:
        parser.error("an ensemble needs two or more runs")
    samples, _ = drop_duplicates(scan_split(args.site.parent, args.site.name))
    labels = np.array([s.label for s in samples], dtype=bool)
    logits = {}
    for run_dir in args.runs:
        logits[run_dir.name] = run_logits(run_dir, [s.path for s in samples])
        print(f"{run_dir.name}: AUC {roc_auc(labels, logits[run_dir.name]):.4f}", flush=True)
    for size in range(2, len(logits) + 1):
        for names in itertools.combinations(logits, size):
            mean = np.mean([logits[n] for n in names], axis=0)
            print(f"mean logit of {' + '.join(names)}: AUC {roc_auc(labels, mean):.4f}")
    print(f"{INTENDED_USE} Every figure here is a research measurement.")


def run_logits(run_dir: Path, paths: list[Path]) -> np.ndarray:
    """The run's logit for each film, through the input path the run was trained with."""
    run = read_run_dir(run_dir)
    model = keras.models.load_model(run.model_path, compile=False)
    films = np.stack([load_model_input(p.read_bytes(), run.input_size, run.intensity) for p in paths])
    p = model.predict(films.astype(np.float32), batch_size=32, verbose=0).astype(np.float64).ravel()
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


if __name__ == "__main__":
    main()
