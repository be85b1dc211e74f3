"""Leave-batch-out folds: no patient and no NORMAL acquisition batch on both sides."""

from __future__ import annotations

from pathlib import Path

from edge.kermany import Sample, patient_id
from trainer.folds import FOLDS, fold_split, normal_batch


def _samples() -> list[Sample]:
    names = [f"IM-{i:04d}-0001.jpeg" for i in range(10)] + [
        f"NORMAL2-IM-{i:04d}-0001.jpeg" for i in range(12)
    ]
    normals = [Sample(Path(n), 0, patient_id(n), n) for n in names]
    pneumonia = [
        Sample(Path(f"person{p}_bacteria_{k}.jpeg"), 1, f"person{p}", f"p{p}-{k}")
        for p in range(30)
        for k in range(2)
    ]
    return normals + pneumonia


def test_each_fold_holds_one_normal_batch_out():
    samples = _samples()
    for fold in FOLDS:
        train, test = fold_split(samples, fold, seed=0)
        assert {normal_batch(s) for s in train if s.label == 0} == {fold.train_batch}
        assert {normal_batch(s) for s in test if s.label == 0} == {fold.test_batch}


def test_folds_never_mix_patients_and_test_every_patient_once():
    samples = _samples()
    tested = []
    for fold in FOLDS:
        train, test = fold_split(samples, fold, seed=0)
        assert not {s.patient for s in train} & {s.patient for s in test}
        assert len(train) + len(test) == len(samples)
        tested += [s.patient for s in test if s.label == 1]
    assert sorted(set(tested)) == sorted({s.patient for s in samples if s.label == 1})
    assert len(tested) == len(set(tested)) * 2  # two films per patient, each tested in one fold only


def test_normal2_prefix_names_the_second_batch():
    assert normal_batch(Sample(Path("x"), 0, "NORMAL2-IM-0383", "h")) == "NORMAL2"
    assert normal_batch(Sample(Path("x"), 0, "IM-0115", "h")) == "IM"
