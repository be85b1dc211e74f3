"""The patient-level split and the class weights: no leakage, stratified, repeatable."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.kermany import Sample
from lab.run_dir import read_split, write_split
from trainer.split import class_weights, patient_split


def make_samples(normal_patients: int, pneumonia_patients: int, films: int = 2) -> list[Sample]:
    samples = []
    for label, count, prefix in ((0, normal_patients, "IM"), (1, pneumonia_patients, "person")):
        for p in range(count):
            for f in range(films):
                name = f"{prefix}{p}-{f}.jpeg"
                samples.append(Sample(Path("train") / name, label, f"{prefix}{p}", f"{prefix}{p}-{f}"))
    return samples


def patients(samples: list[Sample]) -> set[str]:
    return {s.patient for s in samples}


def test_no_patient_on_both_sides():
    samples = make_samples(40, 60, films=3)
    # a patient with films of both labels must stay whole too
    samples.append(Sample(Path("train/mixed-0.jpeg"), 0, "person7", "mixed-0"))
    train, val = patient_split(samples, 0.2, seed=1)
    assert patients(train).isdisjoint(patients(val))
    assert len(train) + len(val) == len(samples)
    assert {s.sha256 for s in train} | {s.sha256 for s in val} == {s.sha256 for s in samples}


def test_split_is_stratified_by_patient_class():
    train, val = patient_split(make_samples(100, 300), 0.2, seed=3)
    val_normal = {s.patient for s in val if s.label == 0}
    val_pneumonia = {s.patient for s in val if s.label == 1}
    assert (len(val_normal), len(val_pneumonia)) == (20, 60)
    assert len(train) == 2 * (80 + 240)


def test_each_class_keeps_at_least_one_validation_patient():
    _, val = patient_split(make_samples(2, 30), 0.1, seed=0)
    assert {s.label for s in val} == {0, 1}


def test_same_seed_same_split_other_seed_other_split():
    samples = make_samples(50, 50)
    first = patient_split(samples, 0.2, seed=7)
    assert patient_split(samples, 0.2, seed=7) == first
    assert patients(patient_split(samples, 0.2, seed=8)[1]) != patients(first[1])


def test_split_does_not_depend_on_input_order():
    samples = make_samples(30, 30)
    _, val = patient_split(samples, 0.2, seed=5)
    _, val_reversed = patient_split(samples[::-1], 0.2, seed=5)
    assert patients(val) == patients(val_reversed)


def test_duplicates_are_dropped_before_splitting(kermany: Path):
    from trainer.data import collect_samples

    samples, dropped = collect_samples(kermany)
    assert [s.path.name for s in dropped] == ["person999_virus_1.jpeg"]
    train, val = patient_split(samples, 0.3, seed=2)
    assert {s.sha256 for s in train}.isdisjoint({s.sha256 for s in val})


def test_split_file_round_trip_re_roots_paths(tmp_path: Path):
    old_root, new_root = tmp_path / "old", tmp_path / "new"
    samples = [Sample(old_root / s.path, s.label, s.patient, s.sha256) for s in make_samples(5, 5)]
    for s in samples:
        s.path.parent.mkdir(parents=True, exist_ok=True)
        s.path.touch()
    train, val = patient_split(samples, 0.2, seed=0)
    write_split(tmp_path / "split.csv", train, val, old_root)
    rows = read_split(tmp_path / "split.csv")
    back = {subset: [row.sample(new_root) for row in subset_rows] for subset, subset_rows in rows.items()}
    assert [s.path for s in back["val"]] == [new_root / s.path.relative_to(old_root) for s in val]
    assert [(s.label, s.patient, s.sha256) for s in back["train"]] == [
        (s.label, s.patient, s.sha256) for s in train
    ]


def test_class_weights_balance_the_classes():
    samples = make_samples(10, 30, films=1)  # 10 NORMAL, 30 PNEUMONIA
    weights = class_weights(samples)
    assert weights == pytest.approx({0: 40 / (2 * 10), 1: 40 / (2 * 30)})
    assert weights[0] * 10 == pytest.approx(weights[1] * 30)


def test_class_weights_need_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        class_weights(make_samples(0, 5))
