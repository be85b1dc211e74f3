"""Patient-level, stratified, seeded train/validation split, and the class weights it implies.

split.csv, the file that records it, is part of the run directory (lab/run_dir.py)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from edge.kermany import LABELS, Sample


def patient_split(
    samples: Sequence[Sample], val_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Hold out whole patients, per class, so no patient's images sit on both sides."""
    # A patient's stratum is PNEUMONIA if any of their images is, so mixed patients stay whole.
    stratum: dict[str, int] = defaultdict(int)
    for sample in samples:
        stratum[sample.patient] = max(stratum[sample.patient], sample.label)
    patients_by_label: dict[int, list[str]] = defaultdict(list)
    for patient in sorted(stratum):
        patients_by_label[stratum[patient]].append(patient)
    rng = random.Random(seed)
    val_patients: set[str] = set()
    for label in sorted(patients_by_label):
        patients = patients_by_label[label]
        rng.shuffle(patients)
        val_patients.update(patients[: max(1, round(len(patients) * val_fraction))])
    train = [s for s in samples if s.patient not in val_patients]
    val = [s for s in samples if s.patient in val_patients]
    return train, val


def class_weights(samples: Sequence[Sample]) -> dict[int, float]:
    """Inverse-frequency weights (n / (k * n_c)): each class contributes equally to the loss."""
    counts = [sum(1 for s in samples if s.label == label) for label in range(len(LABELS))]
    if min(counts) == 0:
        raise ValueError(f"both classes are needed to train; counts per {LABELS} are {counts}")
    total = sum(counts)
    return {label: total / (len(counts) * count) for label, count in enumerate(counts)}
