"""Patient-level, stratified, seeded train/validation split, and the class weights it implies."""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from edge.kermany import LABELS, Sample

SPLIT_FIELDS = ("subset", "label", "patient", "sha256", "path")


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


def write_split(path: Path, train: Sequence[Sample], val: Sequence[Sample], data_root: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SPLIT_FIELDS)
        for subset, samples in (("train", train), ("val", val)):
            for s in samples:
                rel = s.path.resolve().relative_to(data_root.resolve())
                writer.writerow((subset, LABELS[s.label], s.patient, s.sha256, rel.as_posix()))


def read_split(path: Path, data_root: Path) -> dict[str, list[Sample]]:
    """The run's split, with paths re-rooted at `data_root` (the data may have moved)."""
    subsets: dict[str, list[Sample]] = {"train": [], "val": []}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            sample = Sample(
                data_root / row["path"], LABELS.index(row["label"]), row["patient"], row["sha256"]
            )
            subsets[row["subset"]].append(sample)
    return subsets
