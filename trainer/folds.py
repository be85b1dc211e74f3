"""Leave-batch-out folds: a shift evaluation built from the training split alone.

The training split's NORMAL films come from two acquisition batches, named `IM-*` and
`NORMAL2-IM-*`; a model that learnt one batch's look calls the other batch's healthy children
PNEUMONIA, which is what the later cohort showed. Each fold trains on one NORMAL batch and half of
the pneumonia patients and is tested on the other batch and the other patients, so no patient and
no NORMAL batch is on both sides. The worse fold is the figure to report.

Each fold is a full training run (`trainer.train.train` with the fold as its split) in OUT/fold-NAME.
The last epoch is kept, so the test side chooses nothing but the reported operating point.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.kermany import LABELS, Sample
from edge.metrics import binary_metrics, choose_threshold
from trainer.config import TrainConfig

log = logging.getLogger(__name__)

NORMAL_BATCHES = ("IM", "NORMAL2")


def normal_batch(sample: Sample) -> str:
    """`NORMAL2` for NORMAL2-IM-* films, `IM` for IM-* ones."""
    return "NORMAL2" if sample.patient.upper().startswith("NORMAL2-") else "IM"


@dataclass(frozen=True)
class Fold:
    """Train on NORMAL films of `train_batch` and half the pneumonia patients; test on the rest."""

    name: str
    train_batch: str
    test_batch: str


FOLDS = (Fold("train-IM-test-NORMAL2", "IM", "NORMAL2"), Fold("train-NORMAL2-test-IM", "NORMAL2", "IM"))


def fold_split(samples: Sequence[Sample], fold: Fold, seed: int) -> tuple[list[Sample], list[Sample]]:
    """The fold's (train, test) samples: NORMAL by batch, PNEUMONIA by patient halves (seeded)."""
    pneumonia_patients = sorted({s.patient for s in samples if s.label == 1})
    random.Random(seed).shuffle(pneumonia_patients)
    half = len(pneumonia_patients) // 2
    # fold 0 trains on the first half, fold 1 on the second: every patient is tested exactly once
    train_patients = set(pneumonia_patients[:half] if fold == FOLDS[0] else pneumonia_patients[half:])
    train, test = [], []
    for sample in samples:
        if sample.label == 1:
            (train if sample.patient in train_patients else test).append(sample)
        elif normal_batch(sample) == fold.train_batch:
            train.append(sample)
        else:
            test.append(sample)
    return train, test


def fold_report(run_dir: Path, min_recall: float, seed: int) -> dict[str, Any]:
    """AUC, and specificity at the highest threshold keeping recall >= min_recall, on the held-out side."""
    rows = [line.split(",") for line in (run_dir / "val_predictions.csv").read_text().splitlines()[1:]]
    labels = np.array([LABELS.index(r[1]) for r in rows])
    scores = np.array([float(r[2]) for r in rows])
    threshold = choose_threshold(labels, scores, min_recall)
    return {
        "test_films": len(rows),
        "test_pneumonia": int(labels.sum()),
        "auc": binary_metrics(labels, scores, 0.5, seed=seed)["auc"],
        "operating_point": f"recall >= {min_recall} on this fold's test side (threshold-free comparison)",
        "specificity_at_recall": binary_metrics(labels, scores, threshold, seed=seed)["specificity"],
    }


def run_folds(config: TrainConfig, data_root: Path, out_dir: Path) -> dict[str, Any]:
    """Train and test every fold; write OUT/folds.json with each fold and the worse one."""
    from trainer.train import train  # TensorFlow loads only when a fold is really trained

    results = {}
    for fold in FOLDS:
        run_dir = out_dir / f"fold-{fold.name}"
        log.info("fold %s", fold.name)
        train(config, data_root, run_dir, split=lambda s, f=fold: fold_split(s, f, config.seed))
        results[fold.name] = fold_report(run_dir, config.min_recall, config.seed)
    worse = min(results, key=lambda name: results[name]["auc"]["value"])
    summary = {"folds": results, "worse_fold": worse, "worse_auc": results[worse]["auc"]}
    (out_dir / "folds.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    log.info("worse fold %s: AUC %.4f", worse, results[worse]["auc"]["value"])
    return summary
