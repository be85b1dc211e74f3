"""The run directory contract: what the trainer writes is what quantize and evaluate read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.kermany import Sample
from lab.run_dir import CONFIG_FILE, RUN_FILE, SPLIT_FILE, read_run_dir, read_split, write_run, write_split

RUN = {"feature_layer": "features", "input_size": 64, "labels": ["NORMAL", "PNEUMONIA"], "data_root": "/d"}


def make_run(root: Path, model_file: str = "best.keras", **extra: object) -> Path:
    root.mkdir()
    data = root / "data"
    samples = [
        Sample(data / "train/NORMAL/a.jpeg", 0, "p1", "a" * 64),
        Sample(data / "train/PNEUMONIA/b.jpeg", 1, "p2", "b" * 64),
        Sample(data / "train/PNEUMONIA/c.jpeg", 1, "p3", "c" * 64),
    ]
    write_split(root / SPLIT_FILE, samples[:2], samples[2:], data)
    (root / CONFIG_FILE).write_text(json.dumps({"min_recall": 0.9, "seed": 3}))
    (root / model_file).write_bytes(b"a model")
    write_run(root, {**RUN, "model_file": model_file, **extra})
    return root


def test_the_model_file_is_the_one_run_json_names(tmp_path: Path) -> None:
    run = read_run_dir(make_run(tmp_path / "run", "best.keras"))
    assert run.model_path == tmp_path / "run" / "best.keras"
    (run.model_path).unlink()
    with pytest.raises(FileNotFoundError, match=r"best\.keras, the model run.json names, is missing"):
        read_run_dir(tmp_path / "run")


def test_split_rows_round_trip_relative_to_the_data_root(tmp_path: Path) -> None:
    run = read_run_dir(make_run(tmp_path / "run"))
    assert [(r.path, r.label, r.patient) for r in run.split["train"]] == [
        ("train/NORMAL/a.jpeg", 0, "p1"),
        ("train/PNEUMONIA/b.jpeg", 1, "p2"),
    ]
    moved = run.split["val"][0].sample(tmp_path / "elsewhere")
    assert moved == Sample(tmp_path / "elsewhere/train/PNEUMONIA/c.jpeg", 1, "p3", "c" * 64)


def test_class_weights_come_from_run_json(tmp_path: Path) -> None:
    run = read_run_dir(make_run(tmp_path / "run", class_weights={"NORMAL": 1.5, "PNEUMONIA": 0.75}))
    assert run.class_weights == {0: 1.5, 1: 0.75}
    old = read_run_dir(make_run(tmp_path / "old"))
    with pytest.raises(ValueError, match="lacks class_weights"):
        _ = old.class_weights


def test_run_json_is_written_last_and_complete(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"must be written before run\.json"):
        write_run(tmp_path, {**RUN, "model_file": "model.keras"})
    (tmp_path / "model.keras").write_bytes(b"m")
    incomplete = {key: value for key, value in RUN.items() if key != "input_size"}
    with pytest.raises(ValueError, match=r"run\.json needs input_size"):
        write_run(tmp_path, {**incomplete, "model_file": "model.keras"})
    assert not (tmp_path / RUN_FILE).exists()


def test_a_split_with_other_columns_is_refused(tmp_path: Path) -> None:
    (tmp_path / SPLIT_FILE).write_text("subset,label,path\ntrain,NORMAL,a.jpeg\n")
    with pytest.raises(ValueError, match="must have the columns subset,label,patient,sha256,path"):
        read_split(tmp_path / SPLIT_FILE)
